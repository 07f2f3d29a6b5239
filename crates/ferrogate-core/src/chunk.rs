//! Upstream OpenAI JSON forwarded as the upstream wrote it, with the little that settle needs
//! already read out of it:
//! - [`RawChunk`]: one `chat.completion.chunk` of a stream (SSE passthrough) — the content (as a
//!   byte range, decoded only if escaped), whether it carries tool calls, the finish reason;
//! - [`RawCompletion`]: a whole `chat.completion` (the answer's typed fields are read into the
//!   backend's `Completion` beside it).
//!
//! Both keep the byte ranges of the upstream's `id` and `model`, which the OpenAI front writes
//! over with its own id and the model name the client asked for ([`splice`]).
//!
//! Invariant: a raw chunk carries one choice of index 0, no usage (a `usage` key, if any, is
//! `null`), no log probabilities, no error, and a finish reason only when it is one of OpenAI's
//! own words: anything else is decoded into ordinary `StreamEvent`s by the backend instead.
//! A front that does not speak OpenAI chat chunks re-frames a raw chunk from its text, tool
//! calls ([`RawChunk::decode_tool_calls`]) and finish reason.
//!
//! A raw completion is a `chat.completion` with one choice of index 0, the upstream's usage, no
//! log probabilities and one of OpenAI's own finish reasons; anything else is decoded and
//! re-encoded. Fronts other than OpenAI chat use the `Completion`'s fields and ignore it.

use std::ops::Range;

use ferrogate_protocol::openai::FinishReason;
use serde_json::Value;

/// The content of a raw chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkText {
    /// No content (or an empty string).
    Empty,
    /// The content as written between its quotes in the chunk's JSON (no escapes in it).
    Span(Range<usize>),
    /// The content had JSON escapes: decoded.
    Owned(String),
}

/// One upstream chunk passed through as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawChunk {
    /// The chunk's JSON text (one SSE event's data), as received.
    pub json: String,
    /// Where the `id` string's contents are in `json`: the front writes its own id there.
    pub id: Option<Range<usize>>,
    /// Where the `model` string's contents are in `json`: the front writes the model name the
    /// client asked for there.
    pub model: Option<Range<usize>>,
    /// The chunk has a top-level `usage` key (`null`).
    pub usage_key: bool,
    /// Where that `"usage":null` member is, with one adjacent comma, for a front to cut it when
    /// the client did not ask for usage; `None` when absent or not found unambiguously.
    pub usage_span: Option<Range<usize>>,
    pub text: ChunkText,
    /// The delta carries tool-call fragments (a stream with tool calls is not cached).
    pub tool_calls: bool,
    pub finish: Option<FinishReason>,
}

impl RawChunk {
    /// The content text of this chunk (empty when it has none).
    pub fn text(&self) -> &str {
        match &self.text {
            ChunkText::Empty => "",
            ChunkText::Span(r) => self.json.get(r.clone()).unwrap_or(""),
            ChunkText::Owned(s) => s,
        }
    }

    /// Whether the chunk delivers content (text or tool calls) to the client.
    pub fn has_content(&self) -> bool {
        self.tool_calls || !self.text().is_empty()
    }

    /// The tool-call fragments of the delta, decoded (for a front that re-frames the chunk).
    pub fn decode_tool_calls(&self) -> Option<Vec<Value>> {
        if !self.tool_calls {
            return None;
        }
        let v: Value = serde_json::from_str(&self.json).ok()?;
        v["choices"][0]["delta"]["tool_calls"].as_array().filter(|c| !c.is_empty()).cloned()
    }
}

/// A whole upstream chat completion passed through as bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCompletion {
    /// The response body, as received.
    pub json: String,
    /// Where the `id` string's contents are in `json`.
    pub id: Range<usize>,
    /// Where the `model` string's contents are in `json`.
    pub model: Range<usize>,
}

/// `json` with each range replaced by its text (ranges in any order, not overlapping; an empty
/// range at 0 with empty text is no edit), appended to `out`; `None` when a range is not on a
/// character boundary of `json`.
pub fn splice(json: &str, edits: &mut [(Range<usize>, &str)], out: &mut Vec<u8>) -> Option<()> {
    edits.sort_by_key(|(r, _)| r.start);
    let mut at = 0;
    for (range, with) in edits.iter().filter(|(r, w)| r.end > 0 || !w.is_empty()) {
        out.extend_from_slice(json.get(at..range.start)?.as_bytes());
        out.extend_from_slice(with.as_bytes());
        at = range.end;
    }
    out.extend_from_slice(json.get(at..)?.as_bytes());
    Some(())
}

/// `s` as the inside of a JSON string (escaped, without its quotes) when it needs escaping.
pub fn escaped(s: &str) -> Option<String> {
    if !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return None;
    }
    let quoted = serde_json::to_string(s).unwrap_or_default();
    Some(quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str, text: ChunkText, finish: Option<FinishReason>) -> RawChunk {
        RawChunk {
            json: json.into(),
            id: None,
            model: None,
            usage_key: false,
            usage_span: None,
            text,
            tool_calls: false,
            finish,
        }
    }

    #[test]
    fn text_from_a_span_or_decoded() {
        let json = r#"{"choices":[{"index":0,"delta":{"content":"hey"}}]}"#;
        let at = json.find("hey").unwrap_or_default();
        let c = chunk(json, ChunkText::Span(at..at + 3), None);
        assert_eq!((c.text(), c.has_content()), ("hey", true));
        let c = chunk(json, ChunkText::Owned("a\nb".into()), None);
        assert_eq!(c.text(), "a\nb");
        assert!(!chunk(json, ChunkText::Empty, None).has_content());
    }

    #[test]
    fn tool_calls_decoded_on_demand() {
        let json = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]},"finish_reason":"tool_calls"}]}"#;
        let mut c = chunk(json, ChunkText::Empty, Some(FinishReason::ToolCalls));
        assert_eq!(c.decode_tool_calls(), None, "not flagged: not read");
        c.tool_calls = true;
        assert_eq!(c.decode_tool_calls().map(|t| t.len()), Some(1));
        assert!(c.has_content());
    }

    #[test]
    fn splice_writes_over_ranges_in_any_order() {
        let json = r#"{"id":"up","model":"m"}"#;
        let (id, model) = (7..9, 20..21);
        let mut out = Vec::new();
        splice(json, &mut [(model, "alias"), (id, "chatcmpl-1"), (0..0, "")], &mut out);
        assert_eq!(out, br#"{"id":"chatcmpl-1","model":"alias"}"#);
        assert_eq!(splice("é", &mut [(0..1, "x")], &mut Vec::new()), None, "not a char boundary");
    }

    #[test]
    fn escaped_only_when_needed() {
        assert_eq!(escaped("plain-name"), None);
        assert_eq!(escaped("a\"b\\c\n").as_deref(), Some(r#"a\"b\\c\n"#));
    }
}
