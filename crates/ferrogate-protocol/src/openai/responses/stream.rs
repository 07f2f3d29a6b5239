//! The typed stream of a Responses API call, and the builder that turns chat stream chunks into
//! it.
//!
//! Invariant: `sequence_number` starts at 0 and grows by one per event; a stream the builder
//! drives is `created, in_progress`, then per output item `output_item.added` … `output_item.done`
//! — a message: `content_part.added, output_text.delta*, output_text.done, content_part.done`; a
//! function call: `function_call_arguments.delta*, function_call_arguments.done` — and then
//! exactly one of `completed`, `incomplete` or `failed`. Items open when their first text or
//! call fragment arrives (a stream with neither still carries one, empty, message).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::FinishReason;
use super::super::chat::ChatCompletionChunk;
use super::super::tools::{CallNumbering, ToolCallView};
use super::super::usage::Usage;
use super::call::{FunctionCallItem, ResponseItem, call_item_id};
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
    OutputItemAdded { output_index: u32, item: ResponseItem, sequence_number: u64 },
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
    OutputItemDone { output_index: u32, item: ResponseItem, sequence_number: u64 },
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta { item_id: String, output_index: u32, delta: String, sequence_number: u64 },
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        item_id: String,
        output_index: u32,
        name: String,
        arguments: String,
        sequence_number: u64,
    },
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
            Self::FunctionCallArgumentsDelta { .. } => "response.function_call_arguments.delta",
            Self::FunctionCallArgumentsDone { .. } => "response.function_call_arguments.done",
            Self::Completed { .. } => "response.completed",
            Self::Incomplete { .. } => "response.incomplete",
            Self::Failed { .. } => "response.failed",
            Self::Error { .. } => "error",
        }
    }
}

/// Builds the event sequence of one streamed response: an assistant message item and the
/// function calls the model makes.
#[derive(Debug)]
pub struct ResponseStreamBuilder {
    response: Response,
    item_id: String,
    text: String,
    next_seq: u64,
    started: bool,
    /// The message's `output_index`, once it is open.
    message_index: Option<u32>,
    /// Function calls in the order they opened, with their `output_index`.
    calls: Vec<(u32, FunctionCallItem)>,
    numbering: CallNumbering,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ResponseStreamBuilder {
    /// `response` is the `in_progress` skeleton ([`Response::started`]); `item_id` (`msg_…`)
    /// names the output message (and, through [`call_item_id`], the function calls).
    pub fn new(response: Response, item_id: impl Into<String>) -> Self {
        Self {
            response,
            item_id: item_id.into(),
            text: String::new(),
            next_seq: 0,
            started: false,
            message_index: None,
            calls: Vec::new(),
            numbering: CallNumbering::default(),
            finish: None,
            usage: None,
        }
    }

    fn seq(&mut self) -> u64 {
        let n = self.next_seq;
        self.next_seq += 1;
        n
    }

    fn next_index(&self) -> u32 {
        u32::try_from(self.calls.len()).unwrap_or(u32::MAX).saturating_add(u32::from(self.message_index.is_some()))
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
        vec![
            ResponseStreamEvent::Created { response: snapshot.clone(), sequence_number: self.seq() },
            ResponseStreamEvent::InProgress { response: snapshot, sequence_number: self.seq() },
        ]
    }

    /// The message's opening events, the first time (empty after).
    fn open_message(&mut self) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        if self.message_index.is_some() {
            return events;
        }
        let output_index = self.next_index();
        self.message_index = Some(output_index);
        let item = self.item(ItemStatus::InProgress, "").into();
        events.push(ResponseStreamEvent::OutputItemAdded { output_index, item, sequence_number: self.seq() });
        events.push(ResponseStreamEvent::ContentPartAdded {
            item_id: self.item_id.clone(),
            output_index,
            content_index: 0,
            part: Part::output_text(""),
            sequence_number: self.seq(),
        });
        events
    }

    /// A text delta (after the opening events, which it emits first if needed).
    pub fn delta(&mut self, text: &str) -> Vec<ResponseStreamEvent> {
        if text.is_empty() {
            return self.start();
        }
        let mut events = self.open_message();
        self.text.push_str(text);
        events.push(ResponseStreamEvent::OutputTextDelta {
            item_id: self.item_id.clone(),
            output_index: self.message_index.unwrap_or(0),
            content_index: 0,
            delta: text.to_owned(),
            logprobs: Vec::new(),
            sequence_number: self.seq(),
        });
        events
    }

    /// Chat tool-call fragments (`delta.tool_calls`): a new call opens a `function_call` item,
    /// its argument text becomes `function_call_arguments.delta` events.
    pub fn tool_calls(&mut self, fragments: &[Value]) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        for (position, fragment) in fragments.iter().enumerate() {
            let view = ToolCallView::read(fragment, position);
            let n = self.numbering.number(&view);
            if n == self.calls.len() {
                events.push(self.open_call(n, &view));
            }
            let Some((output_index, call)) = self.calls.get_mut(n) else { continue };
            if call.name.is_empty() {
                call.name = view.name.unwrap_or_default().to_owned();
            }
            let delta = view.arguments.unwrap_or_default();
            if delta.is_empty() {
                continue;
            }
            call.arguments.push_str(delta);
            let (item_id, output_index) = (call.id.clone(), *output_index);
            let sequence_number = self.seq();
            let delta = delta.to_owned();
            events.push(ResponseStreamEvent::FunctionCallArgumentsDelta {
                item_id,
                output_index,
                delta,
                sequence_number,
            });
        }
        events
    }

    fn open_call(&mut self, n: usize, view: &ToolCallView<'_>) -> ResponseStreamEvent {
        let id = call_item_id(&self.item_id, n);
        let call_id = view.id.filter(|c| !c.is_empty()).map_or_else(|| format!("call_{id}"), str::to_owned);
        let mut call = FunctionCallItem::new(id, call_id, view.name.unwrap_or_default(), "");
        call.status = ItemStatus::InProgress;
        let output_index = self.next_index();
        self.calls.push((output_index, call.clone()));
        ResponseStreamEvent::OutputItemAdded {
            output_index,
            item: ResponseItem::FunctionCall(call),
            sequence_number: self.seq(),
        }
    }

    /// One chat chunk: its content becomes a delta, its tool calls function-call events; its
    /// finish reason and usage are kept for [`Self::finish`].
    pub fn push_chunk(&mut self, chunk: &ChatCompletionChunk) -> Vec<ResponseStreamEvent> {
        if let Some(Some(usage)) = chunk.usage {
            self.usage = Some(usage);
        }
        let Some(choice) = chunk.choices.first() else { return self.start() };
        self.finish = choice.finish_reason.or(self.finish);
        let mut events = self.delta(choice.delta.content.as_deref().unwrap_or(""));
        if let Some(calls) = &choice.delta.tool_calls {
            events.extend(self.tool_calls(calls));
        }
        events
    }

    /// The items as they stand, in output order, with `status`.
    fn output(&self, status: ItemStatus) -> Vec<ResponseItem> {
        let message = self.message_index.map(|i| (i, ResponseItem::Message(self.item(status, &self.text))));
        let calls =
            self.calls.iter().map(|(i, c)| (*i, ResponseItem::FunctionCall(FunctionCallItem { status, ..c.clone() })));
        let mut items: Vec<(u32, ResponseItem)> = message.into_iter().chain(calls).collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, item)| item).collect()
    }

    /// The closing events: each item's `…done` events, then `response.completed` (or
    /// `response.incomplete` when a limit cut the answer) carrying the whole response.
    pub fn finish(&mut self) -> Vec<ResponseStreamEvent> {
        let mut events = if self.calls.is_empty() { self.open_message() } else { self.start() };
        let (status, details) = finish_status(self.finish);
        let item_status =
            if status == ResponseStatus::Completed { ItemStatus::Completed } else { ItemStatus::Incomplete };
        let output = self.output(item_status);
        for (output_index, item) in (0u32..).zip(&output) {
            events.extend(self.item_done(output_index, item));
        }
        self.response.output = output;
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

    /// The `…done` events of one finished item.
    fn item_done(&mut self, output_index: u32, item: &ResponseItem) -> Vec<ResponseStreamEvent> {
        let mut events = Vec::new();
        match item {
            ResponseItem::Message(m) => {
                let text = m.text();
                events.push(ResponseStreamEvent::OutputTextDone {
                    item_id: m.id.clone(),
                    output_index,
                    content_index: 0,
                    text: text.clone(),
                    logprobs: Vec::new(),
                    sequence_number: self.seq(),
                });
                events.push(ResponseStreamEvent::ContentPartDone {
                    item_id: m.id.clone(),
                    output_index,
                    content_index: 0,
                    part: Part::output_text(text),
                    sequence_number: self.seq(),
                });
            }
            ResponseItem::FunctionCall(c) => events.push(ResponseStreamEvent::FunctionCallArgumentsDone {
                item_id: c.id.clone(),
                output_index,
                name: c.name.clone(),
                arguments: c.arguments.clone(),
                sequence_number: self.seq(),
            }),
            ResponseItem::FunctionCallOutput(_) => {}
        }
        let item = item.clone();
        events.push(ResponseStreamEvent::OutputItemDone { output_index, item, sequence_number: self.seq() });
        events
    }

    /// The failure after the stream began: `response.failed` carrying `error` and the output so far.
    pub fn fail(&mut self, error: ResponseError) -> Vec<ResponseStreamEvent> {
        let mut events = self.start();
        let mut output = self.output(ItemStatus::Incomplete);
        if output.is_empty() {
            output.push(self.item(ItemStatus::Incomplete, "").into());
        }
        self.response.output = output;
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
    #![allow(clippy::unwrap_used, clippy::panic)]
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

    fn call_chunk(fragments: Value, finish: Option<&str>) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": fragments}, "finish_reason": finish}]
        }))
        .unwrap()
    }

    /// Streamed tool calls (OpenAI's fragment shape: the first fragment names the call, the
    /// rest carry argument text) become function_call items with argument deltas.
    #[test]
    fn tool_call_fragments_become_function_call_events() {
        let mut b = builder();
        let mut events = Vec::new();
        let first = json!([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]);
        events.extend(b.push_chunk(&call_chunk(first, None)));
        events.extend(b.push_chunk(&call_chunk(json!([{"index": 0, "function": {"arguments": "{\"city\":"}}]), None)));
        events.extend(b.push_chunk(&call_chunk(json!([{"index": 0, "function": {"arguments": "\"Paris\"}"}}]), None)));
        events.extend(b.push_chunk(&call_chunk(json!([]), Some("tool_calls"))));
        events.extend(b.finish());
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(seqs(&events), (0..8).collect::<Vec<_>>());
        let added = serde_json::to_value(&events[2]).unwrap();
        assert_eq!(added["item"]["type"], "function_call");
        assert_eq!(
            (added["item"]["status"].as_str(), added["item"]["arguments"].as_str()),
            (Some("in_progress"), Some(""))
        );
        let done = serde_json::to_value(&events[5]).unwrap();
        assert_eq!(done["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(done["item_id"], added["item"]["id"]);
        let output = &b.response().output;
        assert_eq!(output.len(), 1, "no empty message beside the call");
        let ResponseItem::FunctionCall(call) = &output[0] else { panic!("a call") };
        assert_eq!(
            (call.call_id.as_str(), call.name.as_str(), call.status),
            ("call_a", "get_weather", ItemStatus::Completed)
        );
    }

    /// Text then a call: the message is output 0, the call output 1.
    #[test]
    fn text_and_a_call_are_two_items_in_order() {
        let mut b = builder();
        b.push_chunk(&chunk(Some("Let me check."), None, None));
        let call =
            json!([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let events = b.push_chunk(&call_chunk(call, Some("tool_calls")));
        assert_eq!(serde_json::to_value(&events[0]).unwrap()["output_index"], 1);
        b.finish();
        let output = &b.response().output;
        assert!(matches!(&output[0], ResponseItem::Message(m) if m.text() == "Let me check."));
        assert!(matches!(&output[1], ResponseItem::FunctionCall(c) if c.arguments == "{}"));
    }

    /// An event copied from the API reference's streaming example reads back.
    #[test]
    fn documented_events_read() {
        let doc = json!({"type": "response.output_text.done", "item_id": "msg_123", "output_index": 0,
            "content_index": 0, "text": "In a shimmering forest...", "logprobs": [], "sequence_number": 1});
        let e: ResponseStreamEvent = serde_json::from_value(doc).unwrap();
        assert_eq!(e.kind(), "response.output_text.done");
        let doc = json!({"type": "response.function_call_arguments.delta", "item_id": "item-abc", "output_index": 0,
            "delta": "{ \"arg\":", "sequence_number": 1});
        let e: ResponseStreamEvent = serde_json::from_value(doc).unwrap();
        assert_eq!(e.kind(), "response.function_call_arguments.delta");
    }
}
