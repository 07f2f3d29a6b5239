//! SSE passthrough, the reading half (pure): an upstream chat chunk becomes a [`RawChunk`] —
//! its JSON kept as received, with the byte ranges of `id`, `model` and the content, whether it
//! has tool calls, and its finish reason — after one borrowing parse that copies nothing. The
//! stream's usage chunk (no choices, a `usage` object) is read in the same pass.
//!
//! Invariant: only a plain chunk passes (see `ferrogate_core::chunk`): one choice of index 0, no
//! usage, no log probabilities, no escapes in `id`/`model`/`finish_reason`, a finish reason that
//! is already OpenAI's word. Anything else is handed back and decoded as before, so usage
//! accounting, error events and finish-reason mapping stay exactly as they were.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use ferrogate_core::chunk::{ChunkText, RawChunk};
use ferrogate_protocol::openai::{FinishReason, Usage};
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

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
