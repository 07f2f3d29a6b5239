//! Anthropic's Messages stream framing: each backend event becomes an OpenAI chunk (the pivot),
//! which the protocol crate's [`StreamTranslator`] turns into `message_start`,
//! `content_block_*`, `message_delta` and `message_stop` events; `ping` is the keep-alive, and a
//! failure after the first byte is one `error` event.

use bytes::Bytes;
use ferrogate_protocol::anthropic::{ErrorResponse, StreamEvent, StreamTranslator, message_id, sse_frame};
use ferrogate_protocol::openai::{Delta, FinishReason, Usage, unix_now};
use serde_json::Value;

use super::Frames;
use super::openai::chat_chunk;
use crate::error::ApiError;

/// The frames of one Messages stream.
pub struct AnthropicFrames {
    translator: StreamTranslator,
    chunk_id: String,
    created: u64,
    model: String,
}

impl AnthropicFrames {
    /// `request_id` names the message (`msg_…`); `input_tokens` is the gateway's prompt
    /// estimate for `message_start` (the final count comes in `message_delta`).
    pub fn new(request_id: &str, model: &str, input_tokens: u32) -> Self {
        let chunk_id = format!("chatcmpl-{request_id}");
        Self {
            translator: StreamTranslator::new(message_id(&chunk_id), model, input_tokens),
            chunk_id,
            created: unix_now(),
            model: model.to_owned(),
        }
    }

    fn push(&mut self, delta: Delta, finish: Option<FinishReason>) -> Vec<Bytes> {
        let chunk = chat_chunk(&self.chunk_id, self.created, &self.model, delta, finish, false);
        frames(self.translator.push(&chunk))
    }
}

fn frames(events: Vec<StreamEvent>) -> Vec<Bytes> {
    events.iter().map(sse_frame).collect()
}

impl Frames for AnthropicFrames {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// `message_start` and a `ping`.
    fn opening(&mut self) -> Vec<Bytes> {
        frames(self.translator.start())
    }

    fn delta(&mut self, text: String, tool_calls: Option<Vec<Value>>) -> Vec<Bytes> {
        self.push(Delta { role: None, content: (!text.is_empty()).then_some(text), tool_calls }, None)
    }

    fn finish(&mut self, reason: FinishReason) -> Vec<Bytes> {
        self.push(Delta::default(), Some(reason))
    }

    /// Open blocks close, then `message_delta` (stop reason, usage) and `message_stop`.
    fn close(&mut self, usage: Usage) -> Vec<Bytes> {
        self.translator.fill_usage(usage);
        frames(self.translator.finish())
    }

    /// One `error` event, typed as Anthropic types the gateway's status.
    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        let shaped = ErrorResponse::from_openai(e.status().as_u16(), &e.body());
        frames(self.translator.fail(shaped.error.kind, shaped.error.message))
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(sse_frame(&StreamEvent::Ping))
    }
}
