//! Passthrough, the reading half (pure): an upstream chat chunk becomes a [`RawChunk`] — its
//! JSON kept as received, with the byte ranges of `id`, `model` and the content, whether it has
//! tool calls, and its finish reason — after one borrowing parse that copies nothing. The
//! stream's usage chunk (no choices, a `usage` object) is read in the same pass. A whole chat
//! completion becomes a [`Completion`] with its body kept as a [`RawCompletion`], read the same
//! way.
//!
//! Invariant: only a plain chunk passes (see `ferrogate_core::chunk`): one choice of index 0, no
//! usage, no log probabilities, no escapes in `id`/`model`/`finish_reason`, a finish reason that
//! is already OpenAI's word. A whole answer passes as a `chat.completion` with one choice of index
//! 0, its `usage`, no log probabilities, an `id` and a `model` without escapes and one of
//! OpenAI's finish reasons.
//! Anything else is handed back and decoded as before, so usage accounting, error events and
//! finish-reason mapping stay exactly as they were.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use ferrogate_core::Completion;
use ferrogate_core::chunk::{ChunkText, RawChunk, RawCompletion};
use ferrogate_protocol::openai::{FinishReason, Usage};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// What the passthrough reads of a chunk; every string borrowed from the chunk's text.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    model: Option<&'a str>,
    /// Exactly one choice passes; none is the usage chunk; several decode instead.
    #[serde(borrow)]
    choices: Listed<PeekChoice<'a>>,
    /// `None`: no key; `Some(None)`: `null`; `Some(Some(_))`: the counts.
    #[serde(default, deserialize_with = "usage")]
    usage: Option<Option<Usage>>,
}

#[derive(Deserialize)]
struct PeekChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    delta: Option<PeekDelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a str>,
    #[serde(default, deserialize_with = "present")]
    logprobs: Option<bool>,
}

#[derive(Deserialize)]
struct PeekDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    /// Elements ignored: a `Vec` of a zero-sized type does not allocate.
    #[serde(default)]
    tool_calls: Option<Vec<IgnoredAny>>,
}

/// A list read to its end: no element, exactly one, or several — without building an error
/// for the other cases (a failed parse formats and boxes one).
#[derive(Debug, PartialEq)]
enum Listed<T> {
    Empty,
    One(T),
    Several,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Listed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
            type Value = Listed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listed<T>, A::Error> {
                let Some(first) = seq.next_element::<T>()? else { return Ok(Listed::Empty) };
                let mut more = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    more = true;
                }
                Ok(if more { Listed::Several } else { Listed::One(first) })
            }
        }
        d.deserialize_seq(Elements(PhantomData))
    }
}

/// Borrowed when the JSON string has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Whether a field is present with a non-null value (`Some(true)`) or `null` (`Some(false)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Some(Option::<IgnoredAny>::deserialize(d)?.is_some()))
}

/// A present `usage`: `Some(None)` for `null`, else its counts.
fn usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Usage>>, D::Error> {
    Ok(Some(Option::<Usage>::deserialize(d)?))
}

/// The byte range of `part` inside `whole` (`part` borrowed from it).
fn span(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start + part.len();
    (end <= whole.len()).then_some(start..end)
}

/// What one read of a chunk found.
#[derive(Debug)]
pub(crate) enum Peeked {
    /// A plain chunk, to pass through.
    Chunk(RawChunk),
    /// The usage chunk: no choices, the stream's counts.
    Usage(Usage),
}

/// `json` as a raw chunk or the stream's usage, or `json` back when it must be decoded (see the
/// module's invariant).
pub(crate) fn peek_chunk(json: String) -> Result<Peeked, String> {
    match read(&json) {
        Some(Peeked::Chunk(parts)) => Ok(Peeked::Chunk(RawChunk { json, ..parts })),
        Some(usage) => Ok(usage),
        None => Err(json),
    }
}

fn read(json: &str) -> Option<Peeked> {
    let peek: Peek<'_> = serde_json::from_str(json).ok()?;
    let choice = match peek.choices {
        Listed::One(choice) => choice,
        // What the decoder makes of it: one usage event (and nothing for `null` or no key).
        Listed::Empty => return peek.usage.flatten().map(Peeked::Usage),
        Listed::Several => return None,
    };
    if choice.index != 0 || matches!(peek.usage, Some(Some(_))) || choice.logprobs == Some(true) {
        return None;
    }
    let finish = match choice.finish_reason {
        Some(r) => {
            let reason = FinishReason::from_upstream(r);
            // A free-form reason is mapped by the decoder; only OpenAI's own words pass.
            (reason.as_str() == r).then_some(Some(reason))?
        }
        None => None,
    };
    let delta = choice.delta.unwrap_or(PeekDelta { content: None, tool_calls: None });
    let text = match delta.content.map(|t| t.0) {
        None => ChunkText::Empty,
        Some(c) if c.is_empty() => ChunkText::Empty,
        Some(Cow::Borrowed(c)) => ChunkText::Span(span(json, c)?),
        Some(Cow::Owned(c)) => ChunkText::Owned(c),
    };
    Some(Peeked::Chunk(RawChunk {
        json: String::new(),
        id: match peek.id {
            Some(id) => Some(span(json, id)?),
            None => None,
        },
        model: match peek.model {
            Some(m) => Some(span(json, m)?),
            None => None,
        },
        usage_key: peek.usage.is_some(),
        usage_span: if peek.usage.is_some() { usage_member(json) } else { None },
        text,
        tool_calls: delta.tool_calls.is_some_and(|c| !c.is_empty()),
        finish,
    }))
}

/// What the passthrough reads of a whole chat completion.
#[derive(Deserialize)]
struct WholePeek<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    model: &'a str,
    /// `chat.completion`: an answer labelled otherwise (or not at all) is re-encoded as one.
    #[serde(borrow, default)]
    object: &'a str,
    #[serde(borrow)]
    choices: Listed<WholeChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct WholeChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow)]
    message: WholeMessage<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<&'a str>,
    #[serde(default, deserialize_with = "present")]
    logprobs: Option<bool>,
}

#[derive(Deserialize)]
struct WholeMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// A whole chat completion read for passing through, with its body kept; or the body back when
/// it must be decoded (see the module's invariant).
pub(crate) fn peek_completion(body: Vec<u8>) -> Result<Completion, Vec<u8>> {
    let json = String::from_utf8(body).map_err(|e| e.into_bytes())?;
    match read_whole(&json) {
        Some((id, model, c)) => Ok(Completion { raw: Some(RawCompletion { json, id, model }), ..c }),
        None => Err(json.into_bytes()),
    }
}

fn read_whole(json: &str) -> Option<(Range<usize>, Range<usize>, Completion)> {
    let peek: WholePeek<'_> = serde_json::from_str(json).ok()?;
    let Listed::One(choice) = peek.choices else { return None };
    if peek.object != "chat.completion" || choice.index != 0 || choice.logprobs == Some(true) {
        return None;
    }
    // No reason (the decoder infers one) or a free-form one (the decoder maps it): decode.
    let written = choice.finish_reason?;
    let reason = FinishReason::from_upstream(written);
    if reason.as_str() != written {
        return None;
    }
    let completion = Completion {
        text: choice.message.content.map(|t| t.0.into_owned()).unwrap_or_default(),
        tool_calls: choice.message.tool_calls.filter(|c| !c.is_empty()),
        logprobs: None,
        finish_reason: reason,
        // None: counted locally, and the gateway's own usage is written: decode.
        usage: Some(peek.usage?),
        raw: None,
    };
    Some((span(json, peek.id)?, span(json, peek.model)?, completion))
}

/// The byte range of the one `"usage":null` member of `json` (whose top-level `usage` is
/// `null`) with one adjacent comma; `None` unless exactly one such member is found. A `"usage"`
/// with its quotes unescaped can only be a key (inside a string, quotes are escaped).
fn usage_member(json: &str) -> Option<Range<usize>> {
    let mut found = None;
    for (at, key) in json.match_indices("\"usage\"") {
        let before = json[..at].trim_end();
        let Some(value) = json[at + key.len()..].trim_start().strip_prefix(':') else { continue };
        let value = value.trim_start();
        if !value.starts_with("null") || !(before.ends_with('{') || before.ends_with(',')) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some((before.len(), json.len() - value.len() + "null".len()));
    }
    let (after_separator, end) = found?;
    if json[..after_separator].ends_with(',') {
        return Some(after_separator - 1..end);
    }
    // The first member: cut it with the comma that follows.
    let rest = json[end..].trim_start().strip_prefix(',')?;
    Some(after_separator..json.len() - rest.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(json: &str) -> Option<RawChunk> {
        match peek_chunk(json.to_owned()) {
            Ok(Peeked::Chunk(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn a_content_chunk_passes_with_its_spans() {
        let json = r#"{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
        let c = raw(json).unwrap();
        assert_eq!(&c.json[c.id.clone().unwrap()], "chatcmpl-up");
        assert_eq!(&c.json[c.model.clone().unwrap()], "up-model");
        assert_eq!((c.text(), c.tool_calls, c.finish, c.usage_key), ("Hello", false, None, false));
    }

    #[test]
    fn escaped_content_is_decoded() {
        let c = raw(r#"{"choices":[{"index":0,"delta":{"content":"a\n\"b\""}}],"usage":null}"#).unwrap();
        assert_eq!(c.text(), "a\n\"b\"");
        assert!(c.usage_key);
    }

    #[test]
    fn the_usage_member_can_be_cut() {
        let cut = |json: &str| {
            let c = raw(json).unwrap();
            let r = c.usage_span.clone().unwrap();
            format!("{}{}", &json[..r.start], &json[r.end..])
        };
        let rest = r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#;
        assert_eq!(cut(r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#), rest);
        let first = r#"{"usage": null, "choices":[{"index":0,"delta":{"content":"x"}}]}"#;
        assert_eq!(cut(first), r#"{ "choices":[{"index":0,"delta":{"content":"x"}}]}"#);
        let twice = r#"{"choices":[{"index":0,"delta":{"content":"x","usage":null}}],"usage":null}"#;
        assert_eq!(raw(twice).unwrap().usage_span, None, "ambiguous: not cut");
    }

    #[test]
    fn finish_and_tool_calls() {
        let c = raw(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!((c.finish, c.has_content()), (Some(FinishReason::Stop), false));
        let c = raw(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}"#).unwrap();
        assert!(c.tool_calls && c.has_content());
        let c = raw(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#).unwrap();
        assert!(!c.has_content());
    }

    const WHOLE: &str = r#"{"id":"chatcmpl-up","object":"chat.completion","created":7,"model":"up-model","system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant","content":"Hi\nthere","reasoning_content":"r"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;

    #[test]
    fn a_whole_answer_passes_with_its_spans_and_fields() {
        let c = peek_completion(WHOLE.as_bytes().to_vec()).unwrap();
        let raw = c.raw.clone().unwrap();
        assert_eq!(raw.json, WHOLE);
        assert_eq!((&raw.json[raw.id.clone()], &raw.json[raw.model.clone()]), ("chatcmpl-up", "up-model"));
        assert_eq!(
            (c.text.as_str(), c.finish_reason, c.tool_calls.is_none()),
            ("Hi\nthere", FinishReason::Length, true)
        );
        assert_eq!(c.usage, Some(Usage::new(3, 2, None)));
        // What the decoder makes of the same body, but for the body kept.
        assert_eq!(Completion { raw: None, ..c }, super::super::convert::parse_completion(WHOLE.as_bytes()).unwrap());
    }

    #[test]
    fn a_whole_answer_with_tool_calls_passes_with_them_decoded() {
        let json = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let c = peek_completion(json.as_bytes().to_vec()).unwrap();
        assert_eq!(
            (c.text.as_str(), c.tool_calls.map(|t| t.len()), c.finish_reason),
            ("", Some(1), FinishReason::ToolCalls)
        );
    }

    #[test]
    fn whole_answers_the_decoder_must_read_are_handed_back() {
        let with = |from: &str, to: &str| {
            assert!(WHOLE.contains(from), "{from}");
            WHOLE.replacen(from, to, 1)
        };
        let back =
            |json: String| peek_completion(json.clone().into_bytes()).err().map(String::from_utf8) == Some(Ok(json));
        assert!(back(with(r#","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}"#, "")), "no usage");
        assert!(back(with(r#""finish_reason":"length""#, r#""finish_reason":"eos""#)), "free-form reason");
        assert!(back(with(r#""finish_reason":"length""#, r#""finish_reason":null"#)), "no reason");
        assert!(back(with(r#""logprobs":null"#, r#""logprobs":{"content":[]}"#)), "log probabilities");
        assert!(back(with(r#""id":"chatcmpl-up""#, r#""id":"a"b""#)), "escaped id");
        assert!(back(with(r#""model":"up-model","#, "")), "no model");
        assert!(back(with(r#""object":"chat.completion","#, "")), "no object");
        assert!(back(with(r#""chat.completion""#, r#""text_completion""#)), "another object");
        assert!(back(with(r#""index":0"#, r#""index":1"#)), "another choice");
        let two = with(r#"}],"usage""#, r#"},{"index":1,"message":{"content":"b"},"finish_reason":"stop"}],"usage""#);
        assert!(back(two), "several choices");
        assert!(back(r#"{"error":{"message":"overloaded"}}"#.to_owned()), "an error object");
        let bad = vec![b'{', 0xff, b'}'];
        assert_eq!(peek_completion(bad.clone()).err(), Some(bad), "not UTF-8");
    }

    #[test]
    fn a_list_of_one_is_read_to_its_end_whatever_its_length() {
        let one = |json: &str| serde_json::from_str::<Listed<u32>>(json);
        assert_eq!(one("[7]").unwrap(), Listed::One(7));
        assert_eq!(one("[]").unwrap(), Listed::Empty);
        assert_eq!(one("[1, 2, 3]").unwrap(), Listed::Several);
        assert!(one("[\"x\"]").is_err(), "an element of the wrong type is still an error");
        assert!(one("{}").is_err());
    }

    #[test]
    fn the_usage_chunk_is_read_in_the_same_pass() {
        let json = r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let read = peek_chunk(json.to_owned());
        assert!(matches!(read, Ok(Peeked::Usage(_))), "not read as usage: {read:?}");
        let Ok(Peeked::Usage(u)) = read else { return };
        // The same counts the decoder reads from it.
        let decoded: Usage =
            serde_json::from_value(serde_json::from_str::<serde_json::Value>(json).unwrap()["usage"].clone()).unwrap();
        assert_eq!(u, decoded);
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens()), (12, 9, 21, 4));
        // No choices and no counts (`null`, no key) give nothing to read: decoded as before.
        for json in [r#"{"choices":[],"usage":null}"#, r#"{"choices":[]}"#, r#"{"choices":[],"usage":"x"}"#] {
            assert!(peek_chunk(json.to_owned()).is_err(), "{json}");
        }
    }

    #[test]
    fn anything_unusual_is_decoded_instead() {
        for json in [
            r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"x"}},{"index":1,"delta":{"content":"y"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"x"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"eos_token"}]}"#,
            r#"{"id":"a\"b","choices":[{"index":0,"delta":{"content":"x"}}]}"#,
            r#"{"error":{"message":"boom"}}"#,
            "not json",
        ] {
            assert!(peek_chunk(json.to_owned()).is_err(), "{json}");
        }
    }
}
