//! Bounds on the shape of a request (issue 17): how long a model name, how many and how large
//! the messages, stop sequences, `logit_bias` and `metadata` may be. Checked before the request is
//! routed or recorded, so a hostile body costs one 400 and nothing downstream.
//!
//! Invariant: an error message never echoes more than [`ECHO_BYTES`] of a client's value.

use serde_json::{Map, Value};

use super::{ChatMessage, InvalidParam, MessageContent, Stop};

/// Longest model name, in bytes.
pub const MAX_MODEL_BYTES: usize = 256;
/// Most stop sequences, and the longest one in bytes.
pub const MAX_STOP_SEQUENCES: usize = 4;
pub const MAX_STOP_BYTES: usize = 256;
/// Most `logit_bias` entries (OpenAI's own bound).
pub const MAX_LOGIT_BIAS: usize = 300;
/// `metadata`: at most 16 pairs, keys of ≤ 64 bytes, string values of ≤ 512 bytes (OpenAI's).
pub const MAX_METADATA_PAIRS: usize = 16;
pub const MAX_METADATA_KEY_BYTES: usize = 64;
pub const MAX_METADATA_VALUE_BYTES: usize = 512;
/// How much of a client's value an error message may quote.
pub const ECHO_BYTES: usize = 64;

/// OpenAI's documented request fields that ferrogate does not type (chat and legacy
/// completions): what a backend accepts by default. Anything else — vendor extensions such as
/// vLLM's `guided_json` — needs the deployment's `extra_body = true`.
pub const OPENAI_EXTRA_FIELDS: &[&str] = &[
    "audio",
    "best_of",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "metadata",
    "modalities",
    "parallel_tool_calls",
    "prediction",
    "prompt_cache_key",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "service_tier",
    "store",
    "suffix",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// The configurable bounds (`[server] max_messages`, `max_message_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Most messages in one chat request.
    pub max_messages: usize,
    /// Largest message: its text plus the strings of its other parts (image URLs), in bytes.
    pub max_message_bytes: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        Self { max_messages: 2048, max_message_bytes: 1024 * 1024 }
    }
}

/// `s` cut to at most [`ECHO_BYTES`] (on a character boundary), with `…` when cut: for quoting a
/// client's value in an error message.
pub fn clip(s: &str) -> String {
    if s.len() <= ECHO_BYTES {
        return s.to_owned();
    }
    let mut end = ECHO_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The model name: present and at most [`MAX_MODEL_BYTES`].
pub fn check_model(model: &str) -> Result<(), InvalidParam> {
    if model.is_empty() {
        return Err(InvalidParam::new("model", "'model' must not be empty"));
    }
    if model.len() > MAX_MODEL_BYTES {
        let msg = format!("'model' is {} bytes long, more than {MAX_MODEL_BYTES}: '{}'", model.len(), clip(model));
        return Err(InvalidParam::new("model", msg));
    }
    Ok(())
}

/// `stop`: at most four sequences, each non-empty and at most [`MAX_STOP_BYTES`].
pub fn check_stop(stop: Option<&Stop>) -> Result<(), InvalidParam> {
    let list = match stop {
        None => return Ok(()),
        Some(Stop::One(s)) => std::slice::from_ref(s),
        Some(Stop::Many(v)) => v.as_slice(),
    };
    if list.len() > MAX_STOP_SEQUENCES {
        return Err(InvalidParam::new("stop", format!("'stop' accepts at most {MAX_STOP_SEQUENCES} sequences")));
    }
    if list.iter().any(String::is_empty) {
        return Err(InvalidParam::new("stop", "stop sequences must not be empty"));
    }
    if let Some(s) = list.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        let msg = format!("stop sequences are at most {MAX_STOP_BYTES} bytes long: '{}'", clip(s));
        return Err(InvalidParam::new("stop", msg));
    }
    Ok(())
}

/// The number of messages and the size of each.
pub fn check_messages(messages: &[ChatMessage], limits: &ShapeLimits) -> Result<(), InvalidParam> {
    if messages.len() > limits.max_messages {
        let msg = format!("'messages' holds {} messages, more than {}", messages.len(), limits.max_messages);
        return Err(InvalidParam::new("messages", msg));
    }
    for (i, m) in messages.iter().enumerate() {
        let size = message_bytes(m);
        if size > limits.max_message_bytes {
            let msg = format!("message {i} is {size} bytes long, more than {}", limits.max_message_bytes);
            return Err(InvalidParam::new(format!("messages[{i}]"), msg));
        }
    }
    Ok(())
}

/// A message's size: its text, its name, and every string of its other parts and tool calls.
fn message_bytes(m: &ChatMessage) -> usize {
    let content = match &m.content {
        None => 0,
        Some(MessageContent::Text(s)) => s.len(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| {
                p.kind.len()
                    + p.text.as_ref().map_or(0, String::len)
                    + p.rest.values().map(strings_bytes).sum::<usize>()
            })
            .sum(),
    };
    let calls = m.tool_calls.as_ref().map_or(0, |c| c.iter().map(strings_bytes).sum());
    content + calls + m.name.as_ref().map_or(0, String::len)
}

/// The bytes of every string (and object key) in a JSON value.
fn strings_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(strings_bytes).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + strings_bytes(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
    }
}

/// The untyped fields whose size is bounded: `logit_bias` and `metadata`.
pub fn check_extra(extra: &Map<String, Value>) -> Result<(), InvalidParam> {
    if let Some(Value::Object(bias)) = extra.get("logit_bias")
        && bias.len() > MAX_LOGIT_BIAS
    {
        let msg = format!("'logit_bias' holds {} entries, more than {MAX_LOGIT_BIAS}", bias.len());
        return Err(InvalidParam::new("logit_bias", msg));
    }
    match extra.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => check_metadata(m),
        Some(_) => Err(InvalidParam::new("metadata", "'metadata' must be an object of strings")),
    }
}

fn check_metadata(m: &Map<String, Value>) -> Result<(), InvalidParam> {
    if m.len() > MAX_METADATA_PAIRS {
        return Err(InvalidParam::new("metadata", format!("'metadata' holds at most {MAX_METADATA_PAIRS} pairs")));
    }
    for (k, v) in m {
        if k.len() > MAX_METADATA_KEY_BYTES {
            let msg = format!("metadata keys are at most {MAX_METADATA_KEY_BYTES} bytes long: '{}'", clip(k));
            return Err(InvalidParam::new("metadata", msg));
        }
        let Value::String(v) = v else {
            return Err(InvalidParam::new(format!("metadata.{}", clip(k)), "metadata values must be strings"));
        };
        if v.len() > MAX_METADATA_VALUE_BYTES {
            let msg = format!("metadata values are at most {MAX_METADATA_VALUE_BYTES} bytes long");
            return Err(InvalidParam::new(format!("metadata.{}", clip(k)), msg));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::openai::Role;

    #[test]
    fn model_names_are_bounded_and_echoes_clipped() {
        assert!(check_model(&"m".repeat(MAX_MODEL_BYTES)).is_ok());
        let e = check_model(&"é".repeat(MAX_MODEL_BYTES)).unwrap_err();
        assert_eq!(e.param, "model");
        assert!(e.message.len() < 200, "{}", e.message);
        assert!(e.message.ends_with("…'"), "{}", e.message);
        assert!(check_model("").is_err());
    }

    #[test]
    fn stop_sequences_are_few_short_and_non_empty() {
        let many = |n: usize, s: &str| Stop::Many(vec![s.to_owned(); n]);
        assert!(check_stop(Some(&many(4, "x"))).is_ok());
        assert!(check_stop(Some(&many(5, "x"))).is_err());
        assert!(check_stop(Some(&many(1, ""))).is_err());
        assert!(check_stop(Some(&Stop::One(String::new()))).is_err());
        assert!(check_stop(Some(&Stop::One("y".repeat(MAX_STOP_BYTES)))).is_ok());
        assert!(check_stop(Some(&Stop::One("y".repeat(MAX_STOP_BYTES + 1)))).is_err());
    }

    #[test]
    fn messages_are_counted_and_sized() {
        let limits = ShapeLimits { max_messages: 3, max_message_bytes: 10 };
        let m = |s: &str| ChatMessage::new(Role::User, s);
        assert!(check_messages(&[m("0123456789"), m("a"), m("b")], &limits).is_ok());
        assert_eq!(check_messages(&vec![m("a"); 4], &limits).unwrap_err().param, "messages");
        assert_eq!(check_messages(&[m("a"), m("01234567890")], &limits).unwrap_err().param, "messages[1]");
        let image: ChatMessage = serde_json::from_value(json!({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAAAAAAAAAAAAAA"}}]}))
        .unwrap();
        assert!(check_messages(&[image], &limits).is_err(), "other parts count too");
    }

    #[test]
    fn logit_bias_and_metadata_are_bounded() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let bias: Map<String, Value> = (0..=MAX_LOGIT_BIAS).map(|i| (i.to_string(), json!(1))).collect();
        assert_eq!(check_extra(&obj(json!({"logit_bias": bias}))).unwrap_err().param, "logit_bias");
        assert!(check_extra(&obj(json!({"logit_bias": {"1": 5}, "metadata": {"a": "b"}}))).is_ok());
        let meta: Map<String, Value> = (0..=MAX_METADATA_PAIRS).map(|i| (i.to_string(), json!("v"))).collect();
        assert!(check_extra(&obj(json!({"metadata": meta}))).is_err());
        assert!(check_extra(&obj(json!({"metadata": {"k".repeat(65): "v"}}))).is_err());
        assert!(check_extra(&obj(json!({"metadata": {"k": "v".repeat(513)}}))).is_err());
        assert!(check_extra(&obj(json!({"metadata": {"k": 1}}))).is_err());
        assert!(check_extra(&obj(json!({"metadata": "x"}))).is_err());
    }
}
