//! Pure conversions between the Responses API and chat, the internal pivot: a request plus its
//! history becomes a [`ChatCompletionRequest`]; a [`ChatCompletion`] becomes output items.

use super::super::chat::{ChatCompletion, ChatCompletionRequest, ChatMessage, Role};
use super::super::{FinishReason, StreamOptions};
use super::item::{ItemRole, MessageItem, Part};
use super::object::{IncompleteDetails, ResponseStatus, ResponseUsage};
use super::request::ResponsesRequest;

/// The chat messages for a turn: `instructions` as the first (system) message, then the history
/// items, then the new input items, in order.
pub fn chat_messages(instructions: Option<&str>, history: &[MessageItem], input: &[MessageItem]) -> Vec<ChatMessage> {
    let system = instructions.map(|i| ChatMessage::new(Role::System, i));
    system.into_iter().chain(history.iter().chain(input).map(chat_message)).collect()
}

/// One item as a chat message: its parts' text joined.
pub fn chat_message(item: &MessageItem) -> ChatMessage {
    ChatMessage::new(item.role.chat_role(), item.text())
}

/// The chat request that carries out `req` with `messages` (from [`chat_messages`], after the
/// context policy). Sampling parameters carry over; `max_output_tokens` becomes
/// `max_completion_tokens`; streams ask for usage.
pub fn chat_request(req: &ResponsesRequest, messages: Vec<ChatMessage>) -> ChatCompletionRequest {
    let stream = req.is_stream();
    ChatCompletionRequest {
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
    /// One assistant message item (empty text when the model said nothing).
    pub items: Vec<MessageItem>,
    /// `completed`, or `incomplete` when a limit or filter cut the answer.
    pub status: ResponseStatus,
    pub incomplete_details: Option<IncompleteDetails>,
    pub usage: ResponseUsage,
}

/// The output of a chat completion as one assistant message item with id `item_id` (`msg_…`).
pub fn chat_output(c: &ChatCompletion, item_id: impl Into<String>) -> ChatOutput {
    let choice = c.choices.first();
    let text = choice.and_then(|ch| ch.message.content.clone()).unwrap_or_default();
    let refusal = choice.and_then(|ch| ch.message.refusal.clone());
    let part = match refusal {
        Some(r) if text.is_empty() => Part::Refusal { refusal: r },
        _ => Part::output_text(text),
    };
    let (status, incomplete_details) = finish_status(choice.and_then(|ch| ch.finish_reason));
    let mut item = MessageItem::new(item_id, ItemRole::Assistant, vec![part]);
    if status == ResponseStatus::Incomplete {
        item.status = super::item::ItemStatus::Incomplete;
    }
    ChatOutput { items: vec![item], status, incomplete_details, usage: c.usage.into() }
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
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn item(id: &str, role: ItemRole, text: &str) -> MessageItem {
        let part = match role {
            ItemRole::Assistant => Part::output_text(text),
            _ => Part::InputText { text: text.into() },
        };
        MessageItem::new(id, role, vec![part])
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
        assert_eq!(out.items[0].id, "msg_9");
        assert_eq!(out.items[0].text(), "Paris.");
        assert_eq!(out.usage.input_tokens_details.cached_tokens, 8);
        assert_eq!(out.usage.total_tokens, 15);
    }

    #[test]
    fn a_length_stop_is_incomplete() {
        let out = chat_output(&completion("Par", "length"), "msg_9");
        assert_eq!(out.status, ResponseStatus::Incomplete);
        assert_eq!(out.incomplete_details.unwrap().reason, "max_output_tokens");
        assert_eq!(out.items[0].status, super::super::item::ItemStatus::Incomplete);
    }
}
