//! Pure conversions between the Responses API and chat, the internal pivot: a request plus its
//! history becomes a [`ChatCompletionRequest`]; a [`ChatCompletion`] becomes output items.
//!
//! Function calls: a `function_call` item is an assistant message with one tool call (calls in a
//! row join one message, as chat requires before their tool messages); a
//! `function_call_output` item is a `tool` message; a completion's tool calls become
//! `function_call` items after its message.

use serde_json::Value;

use super::super::chat::{ChatCompletion, ChatCompletionRequest, ChatMessage, MessageContent, Role};
use super::super::tools::ToolCallView;
use super::super::{FinishReason, StreamOptions};
use super::call::{FunctionCallItem, ResponseItem, call_item_id};
use super::item::{ItemRole, MessageItem, Part};
use super::object::{IncompleteDetails, ResponseStatus, ResponseUsage};
use super::request::ResponsesRequest;

/// The chat messages for a turn: `instructions` as the first (system) message, then the history
/// items, then the new input items, in order.
pub fn chat_messages(instructions: Option<&str>, history: &[ResponseItem], input: &[ResponseItem]) -> Vec<ChatMessage> {
    let system = instructions.map(|i| ChatMessage::new(Role::System, i));
    join_tool_calls(system.into_iter().chain(history.iter().chain(input).map(chat_message)).collect())
}

/// One item as a chat message: a message's parts' text joined; a function call as an assistant
/// message carrying it; a function's output as a `tool` message.
pub fn chat_message(item: &ResponseItem) -> ChatMessage {
    match item {
        ResponseItem::Message(m) => ChatMessage::new(m.role.chat_role(), m.text()),
        ResponseItem::FunctionCall(c) => ChatMessage {
            content: None,
            tool_calls: Some(vec![c.chat_tool_call()]),
            ..ChatMessage::new(Role::Assistant, "")
        },
        ResponseItem::FunctionCallOutput(o) => {
            ChatMessage { tool_call_id: Some(o.call_id.clone()), ..ChatMessage::new(Role::Tool, o.output.clone()) }
        }
    }
}

/// Folds an assistant message that only carries tool calls into the assistant message before
/// it (text or calls): chat wants all calls of a turn in one message, followed by their results.
pub fn join_tool_calls(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for m in messages {
        let calls_only = m.role == Role::Assistant && m.content.is_none() && m.tool_calls.is_some();
        match out.last_mut() {
            Some(prev) if calls_only && prev.role == Role::Assistant => {
                prev.tool_calls.get_or_insert_with(Vec::new).extend(m.tool_calls.unwrap_or_default());
                if prev.content.as_ref().is_some_and(|c| matches!(c, MessageContent::Text(t) if t.is_empty())) {
                    prev.content = None;
                }
            }
            _ => out.push(m),
        }
    }
    out
}

/// The chat request that carries out `req` with `messages` (from [`chat_messages`], after the
/// context policy). Sampling parameters carry over; `max_output_tokens` becomes
/// `max_completion_tokens`; streams ask for usage.
/// `tools` and `tool_choice` are translated (they were checked by `validate`); `parallel_tool_calls`
/// is passed on when given.
pub fn chat_request(req: &ResponsesRequest, messages: Vec<ChatMessage>) -> ChatCompletionRequest {
    let stream = req.is_stream();
    let tools = req.chat_tools().ok().flatten();
    let mut extra = serde_json::Map::new();
    if let (Some(p), Some(_)) = (req.parallel_tool_calls, &tools) {
        extra.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    ChatCompletionRequest {
        tool_choice: tools.as_ref().and_then(|_| req.chat_tool_choice().ok().flatten()),
        tools: tools.map(Value::Array),
        extra,
        model: req.model.clone(),
        messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_completion_tokens: req.max_output_tokens,
        user: req.user.clone(),
        stream: stream.then_some(true),
        stream_options: stream.then_some(StreamOptions { include_usage: true }),
        ..ChatCompletionRequest::default()
    }
}

/// What a chat completion contributes to a response.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutput {
    /// The assistant message item (left out when the model only called functions), then one
    /// `function_call` item per tool call.
    pub items: Vec<ResponseItem>,
    /// `completed`, or `incomplete` when a limit or filter cut the answer.
    pub status: ResponseStatus,
    pub incomplete_details: Option<IncompleteDetails>,
    pub usage: ResponseUsage,
}

/// The output of a chat completion: an assistant message item with id `item_id` (`msg_…`),
/// then its tool calls as `function_call` items (ids from [`call_item_id`]).
pub fn chat_output(c: &ChatCompletion, item_id: impl Into<String>) -> ChatOutput {
    let item_id = item_id.into();
    let choice = c.choices.first();
    let calls = choice.and_then(|ch| ch.message.tool_calls.as_deref()).unwrap_or_default();
    let calls: Vec<ResponseItem> = calls
        .iter()
        .enumerate()
        .map(|(n, v)| {
            let view = ToolCallView::read(v, n);
            let call_id = view.id.map_or_else(|| format!("call_{}", call_item_id(&item_id, n)), str::to_owned);
            let item = FunctionCallItem::new(
                call_item_id(&item_id, n),
                call_id,
                view.name.unwrap_or_default(),
                view.arguments.unwrap_or("{}"),
            );
            ResponseItem::FunctionCall(item)
        })
        .collect();
    let text = choice.and_then(|ch| ch.message.content.clone()).unwrap_or_default();
    let refusal = choice.and_then(|ch| ch.message.refusal.clone());
    let part = match refusal {
        Some(r) if text.is_empty() => Part::Refusal { refusal: r },
        _ => Part::output_text(text),
    };
    let (status, incomplete_details) = finish_status(choice.and_then(|ch| ch.finish_reason));
    let said_nothing = part.text().is_empty();
    let mut item = MessageItem::new(item_id, ItemRole::Assistant, vec![part]);
    if status == ResponseStatus::Incomplete {
        item.status = super::item::ItemStatus::Incomplete;
    }
    let message = (calls.is_empty() || !said_nothing).then_some(ResponseItem::Message(item));
    let items = message.into_iter().chain(calls).collect();
    ChatOutput { items, status, incomplete_details, usage: c.usage.into() }
}

/// A chat finish reason as a response status: `length` and `content_filter` make the response
/// `incomplete` with OpenAI's reason; anything else is `completed`.
pub fn finish_status(reason: Option<FinishReason>) -> (ResponseStatus, Option<IncompleteDetails>) {
    let incomplete = |r: &str| (ResponseStatus::Incomplete, Some(IncompleteDetails { reason: r.into() }));
    match reason {
        Some(FinishReason::Length) => incomplete("max_output_tokens"),
        Some(FinishReason::ContentFilter) => incomplete("content_filter"),
        Some(FinishReason::Stop | FinishReason::ToolCalls | FinishReason::FunctionCall) | None => {
            (ResponseStatus::Completed, None)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn item(id: &str, role: ItemRole, text: &str) -> ResponseItem {
        let part = match role {
            ItemRole::Assistant => Part::output_text(text),
            _ => Part::InputText { text: text.into() },
        };
        MessageItem::new(id, role, vec![part]).into()
    }

    #[test]
    fn instructions_then_history_then_input() {
        let history = [item("msg_1", ItemRole::User, "hi"), item("msg_2", ItemRole::Assistant, "hello")];
        let input = [item("msg_3", ItemRole::User, "again")];
        let msgs = chat_messages(Some("be brief"), &history, &input);
        let got: Vec<_> = msgs.iter().map(|m| (m.role, m.text())).collect();
        assert_eq!(
            got,
            [
                (Role::System, "be brief".to_owned()),
                (Role::User, "hi".to_owned()),
                (Role::Assistant, "hello".to_owned()),
                (Role::User, "again".to_owned())
            ]
        );
        assert_eq!(chat_messages(None, &[], &input).len(), 1, "no instructions, no system message");
    }

    #[test]
    fn sampling_parameters_carry_over() {
        let req: ResponsesRequest = serde_json::from_value(json!({
            "model": "m", "input": "x", "temperature": 0.0, "top_p": 0.5, "max_output_tokens": 64, "stream": true
        }))
        .unwrap();
        let chat = chat_request(&req, vec![ChatMessage::new(Role::User, "x")]);
        assert_eq!((chat.temperature, chat.top_p, chat.effective_max_tokens()), (Some(0.0), Some(0.5), Some(64)));
        assert!(chat.is_stream() && chat.include_usage());
        assert!(chat.validate().is_ok());
    }

    fn completion(content: &str, finish: &str) -> ChatCompletion {
        serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 8}}
        }))
        .unwrap()
    }

    #[test]
    fn a_completion_becomes_one_assistant_item() {
        let out = chat_output(&completion("Paris.", "stop"), "msg_9");
        assert_eq!(out.status, ResponseStatus::Completed);
        assert_eq!(out.items[0].id(), "msg_9");
        assert_eq!(out.items[0].text(), "Paris.");
        assert_eq!(out.usage.input_tokens_details.cached_tokens, 8);
        assert_eq!(out.usage.total_tokens, 15);
    }

    #[test]
    fn a_length_stop_is_incomplete() {
        let out = chat_output(&completion("Par", "length"), "msg_9");
        assert_eq!(out.status, ResponseStatus::Incomplete);
        assert_eq!(out.incomplete_details.unwrap().reason, "max_output_tokens");
        assert_eq!(out.items[0].status(), super::super::item::ItemStatus::Incomplete);
    }

    #[test]
    fn tool_calls_become_function_call_items() {
        let c: ChatCompletion = serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                               {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
        }))
        .unwrap();
        let out = chat_output(&c, "msg_ab");
        assert_eq!(out.status, ResponseStatus::Completed);
        assert_eq!(out.items.len(), 2, "no empty message beside the calls");
        let ResponseItem::FunctionCall(f) = &out.items[0] else { panic!("a call") };
        assert_eq!(
            (f.id.as_str(), f.call_id.as_str(), f.name.as_str(), f.arguments.as_str()),
            ("fc_ab00000000", "call_a", "f", "{\"x\":1}")
        );
    }

    /// A call and its output, sent back, become one assistant message with the calls and one
    /// tool message per result.
    #[test]
    fn function_items_become_tool_messages() {
        let calls: Vec<ResponseItem> = vec![
            item("msg_1", ItemRole::User, "weather?"),
            ResponseItem::FunctionCall(FunctionCallItem::new("fc_1", "call_1", "w", "{}")),
            ResponseItem::FunctionCall(FunctionCallItem::new("fc_2", "call_2", "w", "{}")),
        ];
        let outputs = [
            ResponseItem::FunctionCallOutput(super::super::call::FunctionCallOutputItem::new("", "call_1", "18C")),
            ResponseItem::FunctionCallOutput(super::super::call::FunctionCallOutputItem::new("", "call_2", "20C")),
        ];
        let msgs = chat_messages(None, &calls, &outputs);
        let roles: Vec<_> = msgs.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Tool]);
        assert_eq!(msgs[1].tool_calls.as_ref().unwrap().len(), 2);
        assert_eq!(msgs[1].tool_calls.as_ref().unwrap()[1]["id"], "call_2");
        assert_eq!((msgs[3].tool_call_id.as_deref(), msgs[3].text().as_str()), (Some("call_2"), "20C"));
        let mut req = ChatCompletionRequest { model: "m".into(), messages: msgs, ..Default::default() };
        req.messages.truncate(4);
        assert!(req.validate().is_ok(), "{:?}", req.validate());
    }

    #[test]
    fn tools_are_translated_into_the_chat_request() {
        let req: ResponsesRequest = serde_json::from_value(json!({
            "model": "m", "input": "x", "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
        }))
        .unwrap();
        let chat = chat_request(&req, vec![ChatMessage::new(Role::User, "x")]);
        assert_eq!(chat.tools.unwrap()[0]["function"]["name"], "f");
        assert_eq!(chat.tool_choice, Some(json!("required")));
        assert_eq!(chat.extra["parallel_tool_calls"], json!(false));
        let plain: ResponsesRequest = serde_json::from_value(json!({"model": "m", "input": "x", "tools": []})).unwrap();
        let chat = chat_request(&plain, vec![]);
        assert!(chat.tools.is_none() && chat.tool_choice.is_none() && chat.extra.is_empty());
    }
}
