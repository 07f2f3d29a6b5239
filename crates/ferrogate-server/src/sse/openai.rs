//! OpenAI's stream framing: `chat.completion.chunk` and legacy `text_completion` chunks, the
//! seeds' simple `/stream` frames, the final usage chunk and `[DONE]`; after a failure, a
//! `data: {"error": …}` event and `[DONE]`.

use bytes::Bytes;
use std::ops::Range;

use ferrogate_core::chunk::{RawChunk, splice};
use ferrogate_protocol::openai::{
    ChatCompletionChunk, ChunkChoice, CompletionChoice, Delta, FinishReason, Role, Usage, unix_now,
};
use ferrogate_protocol::sse::{DONE_FRAME, KEEPALIVE_FRAME, data_frame};
use serde_json::Value;

use super::Frames;
use crate::error::ApiError;
use crate::request::Endpoint;

/// Builds the frames of one OpenAI-shaped stream.
pub struct Encoder {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Log probabilities not yet sent: they ride on the next chat chunk.
    logprobs: Vec<Value>,
    /// `{"id":…,"object":…,"created":…,"model":…` — the start every chunk of this stream
    /// written here shares (`object` is the endpoint's: `chat.completion.chunk`, or
    /// `text_completion` for the legacy endpoint's usage chunk), its strings escaped once.
    head: Head,
}

impl Encoder {
    pub fn new(endpoint: Endpoint, request_id: &str, model: &str, include_usage: bool) -> Self {
        let prefix = if endpoint == Endpoint::Completion { "cmpl-" } else { "chatcmpl-" };
        let id = format!("{prefix}{request_id}");
        let created = unix_now();
        let object = if endpoint == Endpoint::Completion { "text_completion" } else { "chat.completion.chunk" };
        let head = head(&id, object, created, model);
        Self { endpoint, id, created, model: model.to_owned(), include_usage, logprobs: Vec::new(), head }
    }

    /// The stream's chat chunk with `delta` (and the log probabilities not yet sent): the JSON of
    /// [`chat_chunk`] — every token of a decoded stream comes here, so the parts that are the
    /// same in every chunk are copied from [`Encoder::head`], not serialized again.
    fn chat_chunk(&mut self, delta: Delta, finish: Option<FinishReason>) -> Bytes {
        let logprobs = (!self.logprobs.is_empty()).then(|| {
            let content = std::mem::take(&mut self.logprobs);
            serde_json::json!({ "content": content, "refusal": null })
        });
        let text = delta.content.as_ref().map_or(0, String::len);
        let mut out = self.frame_start(text + 96);
        out.extend_from_slice(br#","choices":[{"index":0,"delta":"#);
        let written = serde_json::to_writer(&mut out, &delta)
            .and_then(|()| push_json(&mut out, br#","logprobs":"#, &logprobs))
            .and_then(|()| push_json(&mut out, br#","finish_reason":"#, &finish));
        out.extend_from_slice(b"}]");
        if self.include_usage {
            out.extend_from_slice(br#","usage":null"#);
        }
        frame_end(out, written)
    }

    /// `data: ` and the stream's [`Encoder::head`], with room for `more` bytes.
    fn frame_start(&self, more: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.head.text.len() + more + 3);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(self.head.text.as_bytes());
        out
    }

    fn text_chunk(&self, text: String, finish: Option<FinishReason>) -> Bytes {
        let choice = CompletionChoice { index: 0, text, logprobs: None, finish_reason: finish };
        let mut v = serde_json::json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        json_frame(&v)
    }

    /// Whether this endpoint frames text completions (legacy or the seeds' simple frames)
    /// rather than chat chunks.
    fn simple(&self) -> bool {
        matches!(self.endpoint, Endpoint::Stream | Endpoint::Generate)
    }
}

impl Frames for Encoder {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// The role delta of chat streams.
    fn opening(&mut self) -> Vec<Bytes> {
        match self.endpoint {
            Endpoint::Completion | Endpoint::Stream | Endpoint::Generate => Vec::new(),
            _ => {
                let delta = Delta { role: Some(Role::Assistant), content: Some(String::new()), tool_calls: None };
                vec![self.chat_chunk(delta, None)]
            }
        }
    }

    fn delta(&mut self, text: String, tool_calls: Option<Vec<Value>>) -> Vec<Bytes> {
        vec![match self.endpoint {
            Endpoint::Completion => self.text_chunk(text, None),
            _ if self.simple() => json_frame(&serde_json::json!({ "text": text })),
            _ => self.chat_chunk(Delta { role: None, content: (!text.is_empty()).then_some(text), tool_calls }, None),
        }]
    }

    fn logprobs(&mut self, entries: Vec<Value>) {
        self.logprobs.extend(entries);
    }

    fn finish(&mut self, reason: FinishReason) -> Vec<Bytes> {
        vec![match self.endpoint {
            Endpoint::Completion => self.text_chunk(String::new(), Some(reason)),
            _ if self.simple() => json_frame(&serde_json::json!({ "text": "", "finish_reason": reason.as_str() })),
            _ => self.chat_chunk(Delta::default(), Some(reason)),
        }]
    }

    /// The final usage chunk (empty `choices`) when the client asked for it, then `[DONE]`.
    fn close(&mut self, usage: Usage) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(2);
        if self.include_usage {
            let mut frame = self.frame_start(160);
            let written = push_json(&mut frame, br#","choices":[],"usage":"#, &usage);
            out.push(frame_end(frame, written));
        }
        out.push(Bytes::from_static(DONE_FRAME));
        out
    }

    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![json_frame(&e.body()), Bytes::from_static(DONE_FRAME)]
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(Bytes::from_static(KEEPALIVE_FRAME))
    }

    /// A chat chunk as the upstream wrote it, with the stream's own `id` and the model name the
    /// client asked for written over the upstream's, and its `usage` member as OpenAI frames it
    /// (`"usage":null` when the client asked for usage, none otherwise): one buffer, no
    /// re-encoding. `None` (decode instead) when the chunk cannot be rewritten exactly.
    fn raw(&mut self, chunk: &RawChunk) -> Option<Bytes> {
        if self.endpoint != Endpoint::Chat || !self.logprobs.is_empty() {
            return None;
        }
        let json = chunk.json.as_str();
        // The escaped id and model, as the head has them (inside their quotes).
        let id = self.head.text.get(self.head.id.clone())?;
        let model = self.head.text.get(self.head.model.clone())?;
        let mut edits = [(chunk.id.clone()?, id), (chunk.model.clone()?, model), (0..0, "")];
        if !self.include_usage && chunk.usage_key {
            edits[2] = (chunk.usage_span.clone()?, "");
        }
        let add_usage = self.include_usage && !chunk.usage_key;
        let body_end = if add_usage { json.trim_end().strip_suffix('}')?.len() } else { json.len() };
        let mut out = Vec::with_capacity(json.len() + id.len() + model.len() + 32);
        out.extend_from_slice(b"data: ");
        splice(json.get(..body_end)?, &mut edits, &mut out)?;
        if add_usage {
            out.extend_from_slice(br#","usage":null}"#);
        }
        out.extend_from_slice(b"\n\n");
        Some(Bytes::from(out))
    }
}

/// `{"id":…,"object":…,"created":…,"model":…` as the typed chunk's serializer writes them, and
/// where the escaped id and model lie in it (what passed-through chunks get spliced in).
struct Head {
    text: String,
    id: Range<usize>,
    model: Range<usize>,
}

fn head(id: &str, object: &str, created: u64, model: &str) -> Head {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let (id, object, model) = (quoted(id), quoted(object), quoted(model));
    let mut text = String::with_capacity(40 + id.len() + object.len() + model.len());
    // The inside of a quoted string just pushed: its bytes without the quotes.
    let inside = |text: &String, quoted: &String| text.len() - quoted.len() + 1..text.len() - 1;
    text.push_str(r#"{"id":"#);
    text.push_str(&id);
    let id = inside(&text, &id);
    for part in [r#","object":"#, &object, r#","created":"#, &created.to_string(), r#","model":"#] {
        text.push_str(part);
    }
    text.push_str(&model);
    let model = inside(&text, &model);
    Head { text, id, model }
}

/// The frame's closing `}` and blank line; nothing (logged) if a part failed to serialize.
fn frame_end(mut out: Vec<u8>, written: serde_json::Result<()>) -> Bytes {
    if let Err(e) = written {
        tracing::error!(error = %e, "failed to encode a stream frame");
        return Bytes::new();
    }
    out.extend_from_slice(b"}\n\n");
    Bytes::from(out)
}

/// `key` (a JSON fragment such as `,"usage":`) and `value` as JSON.
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, key: &[u8], value: &T) -> serde_json::Result<()> {
    out.extend_from_slice(key);
    serde_json::to_writer(out, value)
}

/// One chat chunk of choice 0 (also the pivot the other front protocols translate from).
pub fn chat_chunk(
    id: &str,
    created: u64,
    model: &str,
    delta: Delta,
    finish: Option<FinishReason>,
    include_usage: bool,
) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: id.to_owned(),
        object: "chat.completion.chunk".into(),
        created,
        model: model.to_owned(),
        choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }],
        usage: include_usage.then_some(None),
        system_fingerprint: None,
    }
}

/// A `data:` frame of `v` as JSON.
pub fn json_frame<T: serde::Serialize>(v: &T) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(b) => data_frame(&b),
        Err(e) => {
            tracing::error!(error = %e, "failed to encode a stream frame");
            Bytes::new()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ferrogate_core::chunk::ChunkText;

    use super::*;

    fn chunk(json: &str) -> RawChunk {
        let at = |s: &str| json.find(s).map(|i| i..i + s.len());
        RawChunk {
            json: json.into(),
            id: at("up-id"),
            model: at("up-model"),
            usage_key: json.contains("\"usage\""),
            usage_span: json.find(",\"usage\":null").map(|i| i..i + 13),
            text: ChunkText::Span(at("Hi").unwrap()),
            tool_calls: false,
            finish: None,
        }
    }

    const CHUNK: &str = r#"{"id":"up-id","object":"chat.completion.chunk","created":7,"model":"up-model","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;

    fn frame_json(b: &Bytes) -> Value {
        let text = std::str::from_utf8(b).unwrap();
        serde_json::from_str(text.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap()).unwrap()
    }

    #[test]
    fn passed_through_chunks_carry_the_gateway_id_and_model() {
        let mut e = Encoder::new(Endpoint::Chat, "req\"1", "my-\"alias", false);
        let v = frame_json(&e.raw(&chunk(CHUNK)).unwrap());
        assert_eq!((v["id"].as_str(), v["model"].as_str()), (Some("chatcmpl-req\"1"), Some("my-\"alias")));
        assert_eq!((v["created"].as_u64(), v["choices"][0]["delta"]["content"].as_str()), (Some(7), Some("Hi")));
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn usage_null_is_added_when_asked_for() {
        let mut e = Encoder::new(Endpoint::Chat, "r", "m", true);
        let v = frame_json(&e.raw(&chunk(CHUNK)).unwrap());
        assert!(v["usage"].is_null() && v.as_object().unwrap().contains_key("usage"));
    }

    #[test]
    fn usage_null_is_cut_when_not_asked_for() {
        let json = CHUNK.replace("null}]}", "null}],\"usage\":null}");
        let mut e = Encoder::new(Endpoint::Chat, "r", "m", false);
        let v = frame_json(&e.raw(&chunk(&json)).unwrap());
        assert!(v.get("usage").is_none(), "{v}");
        assert_eq!(v["choices"][0]["delta"]["content"], "Hi");
    }

    #[test]
    fn the_encoders_chunks_are_the_json_of_the_typed_chunk() {
        let deltas = [
            Delta { role: Some(Role::Assistant), content: Some(String::new()), tool_calls: None },
            Delta { role: None, content: Some("Hé \"x\"\n".into()), tool_calls: None },
            Delta { role: None, content: None, tool_calls: Some(vec![serde_json::json!({"index": 0, "id": "c"})]) },
            Delta::default(),
        ];
        for include_usage in [false, true] {
            for (delta, finish) in deltas.iter().cloned().zip([None, None, None, Some(FinishReason::Stop)]) {
                for logprobs in [false, true] {
                    let mut e = Encoder::new(Endpoint::Chat, "r\"1", "m-1", include_usage);
                    let mut typed = chat_chunk(&e.id, e.created, &e.model, delta.clone(), finish, include_usage);
                    if logprobs {
                        e.logprobs(vec![serde_json::json!({"token": "a", "logprob": -0.5})]);
                        typed.choices[0].logprobs = Some(serde_json::json!({
                            "content": [{"token": "a", "logprob": -0.5}], "refusal": null
                        }));
                    }
                    assert_eq!(e.chat_chunk(delta.clone(), finish), json_frame(&typed), "{delta:?} {finish:?}");
                    assert!(e.logprobs.is_empty(), "sent log probabilities are not sent again");
                }
            }
        }
    }

    #[test]
    fn the_usage_chunk_has_empty_choices_and_the_streams_usage() {
        for (endpoint, object) in [(Endpoint::Chat, "chat.completion.chunk"), (Endpoint::Completion, "text_completion")]
        {
            let mut e = Encoder::new(endpoint, "r1", "m\"1", true);
            let frames = e.close(Usage::new(5, 4, None));
            assert_eq!(frames.len(), 2);
            let typed = ChatCompletionChunk {
                id: e.id.clone(),
                object: object.into(),
                created: e.created,
                model: e.model.clone(),
                choices: Vec::new(),
                usage: Some(Some(Usage::new(5, 4, None))),
                system_fingerprint: None,
            };
            assert_eq!(frames[0], json_frame(&typed), "the typed chunk's JSON, byte for byte");
            let v = frame_json(&frames[0]);
            assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some(object), Some("m\"1")));
            assert!(v["id"].as_str().unwrap().ends_with("-r1"));
            assert_eq!(v["choices"], serde_json::json!([]));
            assert_eq!((v["usage"]["prompt_tokens"].as_u64(), v["usage"]["total_tokens"].as_u64()), (Some(5), Some(9)));
            assert_eq!(&frames[1][..], DONE_FRAME);
        }
        assert_eq!(Encoder::new(Endpoint::Chat, "r", "m", false).close(Usage::new(1, 1, None)).len(), 1);
    }

    #[test]
    fn other_framings_and_pending_logprobs_re_frame() {
        assert!(Encoder::new(Endpoint::Stream, "r", "m", false).raw(&chunk(CHUNK)).is_none());
        let mut e = Encoder::new(Endpoint::Chat, "r", "m", false);
        e.logprobs(vec![Value::Null]);
        assert!(e.raw(&chunk(CHUNK)).is_none());
    }
}
