//! The Responses API's stream framing: backend events drive the protocol crate's
//! [`ResponseStreamBuilder`] (`response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
//! `response.function_call_arguments.delta` for tool calls, the `…done` events, then
//! `response.completed` or `response.incomplete`), each frame an SSE
//! `event:`/`data:` pair carrying an increasing `sequence_number`. A failure after the first byte
//! is `response.failed` then `error`.
//!
//! The terminal event is held back: [`ResponsesFrames::close`] hands it, with the final response,
//! to the handler ([`Finished`]), which persists the turn first and sends it only once the turn
//! is stored — so a client that saw `response.completed` can continue from it at once — or, if
//! the turn conflicts with another, ends with `response.failed`/`error` instead.

use bytes::Bytes;
use ferrogate_protocol::openai::responses::{Response, ResponseError, ResponseStreamBuilder, ResponseStreamEvent};
use ferrogate_protocol::openai::{Delta, FinishReason, Usage, unix_now};
use ferrogate_protocol::sse::KEEPALIVE_FRAME;
use serde_json::Value;
use tokio::sync::oneshot;

use super::Frames;
use super::openai::chat_chunk;
use crate::error::ApiError;

/// How a stream ended, for the handler to persist.
pub enum Finished {
    /// The whole answer: the held-back terminal event and the final response.
    Done { last: ResponseStreamEvent, response: Box<Response> },
    /// A failure after the first byte (already sent): the failed response.
    Failed { response: Box<Response> },
}

/// The frames of one Responses stream.
pub struct ResponsesFrames {
    builder: ResponseStreamBuilder,
    chunk_id: String,
    created: u64,
    model: String,
    done: Option<oneshot::Sender<Finished>>,
}

impl ResponsesFrames {
    /// `skeleton` is the `in_progress` response, `item_id` the id of the answer's message; the
    /// stream's end goes to `done`.
    pub fn new(skeleton: Response, item_id: &str, done: oneshot::Sender<Finished>) -> Self {
        let model = skeleton.model.clone();
        Self {
            chunk_id: format!("chatcmpl-{}", skeleton.id),
            builder: ResponseStreamBuilder::new(skeleton, item_id),
            created: unix_now(),
            model,
            done: Some(done),
        }
    }

    fn chunk(&self, finish: Option<FinishReason>) -> ferrogate_protocol::openai::ChatCompletionChunk {
        chat_chunk(&self.chunk_id, self.created, &self.model, Delta::default(), finish, false)
    }

    fn tell(&mut self, f: Finished) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(f);
        }
    }
}

/// One SSE frame: `event: <type>` and the event as JSON.
pub fn event_frame(event: &ResponseStreamEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| {
        r#"{"type":"error","code":"server_error","message":"event encoding failed","param":null,"sequence_number":0}"#
            .to_owned()
    });
    Bytes::from(format!("event: {}\ndata: {data}\n\n", event.kind()))
}

fn frames(events: &[ResponseStreamEvent]) -> Vec<Bytes> {
    events.iter().map(event_frame).collect()
}

impl Frames for ResponsesFrames {
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }

    fn opening(&mut self) -> Vec<Bytes> {
        frames(&self.builder.start())
    }

    fn delta(&mut self, text: String, tool_calls: Option<Vec<Value>>) -> Vec<Bytes> {
        let mut events = self.builder.delta(&text);
        if let Some(calls) = tool_calls {
            events.extend(self.builder.tool_calls(&calls));
        }
        frames(&events)
    }

    fn finish(&mut self, reason: FinishReason) -> Vec<Bytes> {
        let chunk = self.chunk(Some(reason));
        frames(&self.builder.push_chunk(&chunk))
    }

    /// Everything but the terminal event, which goes to the handler with the final response.
    fn close(&mut self, usage: Usage) -> Vec<Bytes> {
        let mut chunk = self.chunk(None);
        chunk.choices.clear();
        chunk.usage = Some(Some(usage));
        self.builder.push_chunk(&chunk);
        let mut events = self.builder.finish();
        let Some(last) = events.pop() else { return Vec::new() };
        let response = Box::new(self.builder.response().clone());
        self.tell(Finished::Done { last, response });
        frames(&events)
    }

    /// `response.failed` (the response with its error) then `error`.
    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        let code = e.code.as_str();
        let mut events = self.builder.fail(ResponseError { code: code.to_owned(), message: e.message.clone() });
        events.push(self.builder.error(Some(code), e.message.clone()));
        let response = Box::new(self.builder.response().clone());
        self.tell(Finished::Failed { response });
        frames(&events)
    }

    fn keepalive(&self) -> Option<Bytes> {
        Some(Bytes::from_static(KEEPALIVE_FRAME))
    }
}
