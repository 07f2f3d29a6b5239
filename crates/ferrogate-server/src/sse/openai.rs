//! OpenAI's stream framing: `chat.completion.chunk` and legacy `text_completion` chunks, the
//! seeds' simple `/stream` frames, the final usage chunk and `[DONE]`; after a failure, a
//! `data: {"error": …}` event and `[DONE]`.

use bytes::Bytes;
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
}

impl Encoder {
    pub fn new(endpoint: Endpoint, request_id: &str, model: &str, include_usage: bool) -> Self {
        let prefix = if endpoint == Endpoint::Completion { "cmpl-" } else { "chatcmpl-" };
        Self {
            endpoint,
            id: format!("{prefix}{request_id}"),
            created: unix_now(),
            model: model.to_owned(),
            include_usage,
            logprobs: Vec::new(),
        }
    }

    fn chat_chunk(&mut self, delta: Delta, finish: Option<FinishReason>) -> Bytes {
        let mut chunk = chat_chunk(&self.id, self.created, &self.model, delta, finish, self.include_usage);
        if !self.logprobs.is_empty() {
            let content = std::mem::take(&mut self.logprobs);
            chunk.choices[0].logprobs = Some(serde_json::json!({ "content": content, "refusal": null }));
        }
        json_frame(&chunk)
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
            let object =
                if self.endpoint == Endpoint::Completion { "text_completion" } else { "chat.completion.chunk" };
            out.push(json_frame(&serde_json::json!({
                "id": self.id, "object": object, "created": self.created, "model": self.model,
                "choices": [], "usage": usage,
            })));
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
