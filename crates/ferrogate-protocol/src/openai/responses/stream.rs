//! The typed stream of a Responses API call, and the builder that turns chat stream chunks into
//! it.
//!
//! Invariant: `sequence_number` starts at 0 and grows by one per event; a stream the builder
//! drives is `created, in_progress, output_item.added, content_part.added, output_text.delta*,
//! output_text.done, content_part.done, output_item.done` and then exactly one of `completed`,
//! `incomplete` or `failed`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::FinishReason;
use super::super::chat::ChatCompletionChunk;
use super::super::usage::Usage;
use super::convert::finish_status;
use super::item::{ItemRole, ItemStatus, MessageItem, Part};
use super::object::{Response, ResponseError, ResponseStatus};

/// One server-sent event of a streamed response; `type` names it, the SSE `event:` line should
/// repeat it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ResponseStreamEvent {
    #[serde(rename = "response.created")]
    Created { response: Box<Response>, sequence_number: u64 },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Box<Response>, sequence_number: u64 },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: u32, item: MessageItem, sequence_number: u64 },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded { item_id: String, output_index: u32, content_index: u32, part: Part, sequence_number: u64 },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
        logprobs: Vec<Value>,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: u32,
        content_index: u32,
        text: String,
        logprobs: Vec<Value>,
        sequence_number: u64,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone { item_id: String, output_index: u32, content_index: u32, part: Part, sequence_number: u64 },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: u32, item: MessageItem, sequence_number: u64 },
    #[serde(rename = "response.completed")]
    Completed { response: Box<Response>, sequence_number: u64 },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Box<Response>, sequence_number: u64 },
    #[serde(rename = "response.failed")]
    Failed { response: Box<Response>, sequence_number: u64 },
    /// A failure outside the response (the stream itself broke).
    #[serde(rename = "error")]
    Error { code: Option<String>, message: String, param: Option<String>, sequence_number: u64 },
}

impl ResponseStreamEvent {
    /// The event's `type`, for the SSE `event:` line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::OutputItemAdded { .. } => "response.output_item.added",
            Self::ContentPartAdded { .. } => "response.content_part.added",
            Self::OutputTextDelta { .. } => "response.output_text.delta",
            Self::OutputTextDone { .. } => "response.output_text.done",
            Self::ContentPartDone { .. } => "response.content_part.done",
            Self::OutputItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::Error { .. } => "error",
        }
    }
}

/// Builds the event sequence of one streamed response with one assistant message item.
#[derive(Debug)]
pub struct ResponseStreamBuilder {
    response: Response,
    item_id: String,
    text: String,
    next_seq: u64,
    started: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ResponseStreamBuilder {
    /// `response` is the `in_progress` skeleton ([`Response::started`]); `item_id` (`msg_…`)
    /// names the output message.
    pub fn new(response: Response, item_id: impl Into<String>) -> Self {
        let item_id = item_id.into();
        Self { response, item_id, text: String::new(), next_seq: 0, started: false, finish: None, usage: None }
    }

    fn seq(&mut self) -> u64 {
        let n = self.next_seq;
        self.next_seq += 1;
        n
    }

    fn item(&self, status: ItemStatus, text: &str) -> MessageItem {
        let mut item = MessageItem::new(self.item_id.clone(), ItemRole::Assistant, vec![Part::output_text(text)]);
        item.status = status;
        if status == ItemStatus::InProgress {
            item.content.clear();
        }
        item
    }

    /// The opening events; idempotent (empty after the first call).
    pub fn start(&mut self) -> Vec<ResponseStreamEvent> {
        if std::mem::replace(&mut self.started, true) {
            return Vec::new();
        }
        let snapshot = Box::new(self.response.clone());
        let item = self.item(ItemStatus::InProgress, "");
        vec![
            ResponseStreamEvent::Created { response: snapshot.clone(), sequence_number: self.seq() },
            ResponseStreamEvent::InProgress { response: snapshot, sequence_number: self.seq() },
            ResponseStreamEvent::OutputItemAdded { output_index: 0, item, sequence_number: self.seq() },
            ResponseStreamEvent::ContentPartAdded {
                item_id: self.item_id.clone(),
                output_index: 0,
                content_index: 0,
                part: Part::output_text(""),
                sequence_number: self.seq(),
            },
        ]
    }

    /// A text delta (after the opening events, which it emits first if needed).
    pub fn delta(&mut self, text: &str) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        if text.is_empty() {
            return events;
        }
        self.text.push_str(text);
        events.push(ResponseStreamEvent::OutputTextDelta {
            item_id: self.item_id.clone(),
            output_index: 0,
            content_index: 0,
            delta: text.to_owned(),
            logprobs: Vec::new(),
            sequence_number: self.seq(),
        });
        events
    }

    /// One chat chunk: its content becomes a delta; its finish reason and usage are kept for
    /// [`Self::finish`].
    pub fn push_chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseStreamEvent> {
        if let Some(Some(usage)) = chunk.usage {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.choices.first() else { return self.start() };
        self.finish = choice.finish_reason.or(self.finish);
        self.delta(choice.delta.content.as_deref().unwrap_or(""))
    }

    /// The closing events: the text, part and item are done, then `response.completed` (or
    /// `response.incomplete` when a limit cut the answer) carrying the whole response.
    pub fn finish(&mut self) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        let (status, details) = finish_status(self.finish);
        let item_status =
            if status == ResponseStatus::Completed { ItemStatus::Completed } else { ItemStatus::Incomplete };
        let (item_id, text) = (self.item_id.clone(), self.text.clone());
        let item = self.item(item_status, &text);
        events.push(ResponseStreamEvent::OutputTextDone {
            item_id: item_id.clone(),
            output_index: 0,
            content_index: 0,
            text: text.clone(),
            logprobs: Vec::new(),
            sequence_number: self.seq(),
        });
        events.push(ResponseStreamEvent::ContentPartDone {
            item_id,
            output_index: 0,
            content_index: 0,
            part: Part::output_text(text),
            sequence_number: self.seq(),
        });
        events.push(ResponseStreamEvent::OutputItemDone {
            output_index: 0,
            item: item.clone(),
            sequence_number: self.seq(),
        });
        self.response.output = vec![item];
        self.response.status = status;
        self.response.incomplete_details = details;
        self.response.usage = self.usage.map(Into::into);
        let response = Box::new(self.response.clone());
        let sequence_number = self.seq();
        events.push(match status {
            ResponseStatus::Completed => ResponseStreamEvent::Completed { response, sequence_number },
            _ => ResponseStreamEvent::Incomplete { response, sequence_number },
        });
        events
    }

    /// The failure after the stream began: `response.failed` carrying `error` and the text so far.
    pub fn fail(&mut self, error: ResponseError) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        let text = self.text.clone();
        self.response.output = vec![self.item(ItemStatus::Incomplete, &text)];
        self.response.status = ResponseStatus::Failed;
        self.response.error = Some(error);
        self.response.usage = self.usage.map(Into::into);
        let response = Box::new(self.response.clone());
        events.push(ResponseStreamEvent::Failed { response, sequence_number: self.seq() });
        events
    }

    /// A stream-level `error` event (the stream broke outside the response's own logic).
    pub fn error(&mut self, code: Option<&str>, message: impl Into<String>) -> ResponseStreamEvent {
        let (code, message) = (code.map(str::to_owned), message.into());
        ResponseStreamEvent::Error { code, message, param: None, sequence_number: self.seq() }
    }

    /// The response as it stands (complete after [`Self::finish`]): what a store keeps.
    pub fn response(&self) -> &Response {
        &self.response
    }

    /// The text generated so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::super::request::ResponsesRequest;
    use super::*;

    fn builder() -> ResponseStreamBuilder {
        let req: ResponsesRequest =
            serde_json::from_value(json!({"model": "m", "input": "hi", "stream": true})).unwrap();
        ResponseStreamBuilder::new(Response::started("resp_1", 1, &req), "msg_1")
    }

    fn chunk(content: Option<&str>, finish: Option<&str>, usage: Option<Value>) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": if content.is_some() || finish.is_some() {
                json!([{"index": 0, "delta": {"content": content}, "finish_reason": finish}])
            } else { json!([]) },
            "usage": usage
        }))
        .unwrap()
    }

    fn kinds(events: &[ResponseStreamEvent]) -> Vec<&'static str> {
        events.iter().map(ResponseStreamEvent::kind).collect()
    }

    fn seqs(events: &[ResponseStreamEvent]) -> Vec<u64> {
        events.iter().map(|e| serde_json::to_value(e).unwrap()["sequence_number"].as_u64().unwrap()).collect()
    }

    #[test]
    fn chat_chunks_become_the_documented_sequence() {
        let mut b = builder();
        let mut events = Vec::new();
        events.extend(b.push_chunk(&chunk(Some("Hel"), None, None)));
        events.extend(b.push_chunk(&chunk(Some("lo"), None, None)));
        events.extend(b.push_chunk(&chunk(Some(""), Some("stop"), None)));
        let usage = json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7});
        events.extend(b.push_chunk(&chunk(None, None, Some(usage))));
        events.extend(b.finish());
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(seqs(&events), (0..10).collect::<Vec<_>>());
        let last = serde_json::to_value(events.last().unwrap()).unwrap();
        assert_eq!(last["response"]["status"], "completed");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["usage"]["output_tokens"], 2);
        let delta = serde_json::to_value(&events[4]).unwrap();
        assert_eq!(
            delta,
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                "content_index": 0, "delta": "Hel", "logprobs": [], "sequence_number": 4})
        );
        assert_eq!(b.response().output_text(), "Hello");
    }

    #[test]
    fn a_length_stop_ends_incomplete() {
        let mut b = builder();
        b.push_chunk(&chunk(Some("x"), Some("length"), None));
        let events = b.finish();
        assert_eq!(kinds(&events).last(), Some(&"response.incomplete"));
        assert_eq!(b.response().incomplete_details.as_ref().unwrap().reason, "max_output_tokens");
    }

    #[test]
    fn a_failure_mid_stream_is_response_failed_with_the_error() {
        let mut b = builder();
        let mut events = b.delta("par");
        events.extend(b.fail(ResponseError { code: "server_error".into(), message: "upstream timed out".into() }));
        assert_eq!(kinds(&events).last(), Some(&"response.failed"));
        assert_eq!(seqs(&events), (0..6).collect::<Vec<_>>());
        assert_eq!(b.response().status, ResponseStatus::Failed);
        let err = serde_json::to_value(b.error(Some("server_error"), "boom")).unwrap();
        assert_eq!(err["type"], "error");
        assert_eq!(err["sequence_number"], 6);
    }

    /// An event copied from the API reference's streaming example reads back.
    #[test]
    fn documented_events_read() {
        let doc = json!({"type": "response.output_text.done", "item_id": "msg_123", "output_index": 0,
            "content_index": 0, "text": "In a shimmering forest...", "logprobs": [], "sequence_number": 1});
        let e: ResponseStreamEvent = serde_json::from_value(doc).unwrap();
        assert_eq!(e.kind(), "response.output_text.done");
    }
}
