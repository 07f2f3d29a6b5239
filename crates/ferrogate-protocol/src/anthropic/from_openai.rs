//! OpenAI answers → Anthropic's: the whole `ChatCompletion` as a `Message`, and the pieces the
//! stream translator shares (stop reason, usage, ids).
//!
//! `finish_reason` → `stop_reason`: `stop` → `end_turn` (or `stop_sequence` when the caller
//! knows which stop sequence matched: OpenAI's shape does not say), `length` → `max_tokens`,
//! `tool_calls` / `function_call` → `tool_use`, `content_filter` → `refusal`.
//!
//! Tool-call ids are kept as they are (`call_…`), so the client's `tool_result.tool_use_id`
//! comes back as the `tool_call_id` the backend issued.

use serde_json::Value;

use super::content::ContentBlock;
use super::response::{Message, StopReason, Usage};
pub use crate::error::ResponseError;
use crate::openai::tools::{ToolCallView, arguments_object};
use crate::openai::{self, ChatCompletion, FinishReason};

/// The stop reason and, for `stop_sequence`, which sequence.
pub fn stop_reason(
    finish: Option<FinishReason>,
    had_tool_calls: bool,
    matched_stop: Option<&str>,
) -> (StopReason, Option<String>) {
    match finish {
        Some(FinishReason::Length) => (StopReason::MaxTokens, None),
        Some(FinishReason::ToolCalls | FinishReason::FunctionCall) => (StopReason::ToolUse, None),
        Some(FinishReason::ContentFilter) => (StopReason::Refusal, None),
        _ if had_tool_calls => (StopReason::ToolUse, None),
        _ => match matched_stop {
            Some(s) => (StopReason::StopSequence, Some(s.to_owned())),
            None => (StopReason::EndTurn, None),
        },
    }
}

/// OpenAI usage in Anthropic's terms: prompt tokens read from a cache are counted apart from
/// `input_tokens`, as Anthropic does (`prompt_tokens` includes them).
pub fn usage(u: &openai::Usage) -> Usage {
    let cached = u.cached_tokens().min(u.prompt_tokens);
    Usage {
        input_tokens: u.prompt_tokens - cached,
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: Some(0),
        cache_read_input_tokens: Some(cached),
    }
}

/// `msg_…` from the OpenAI `chatcmpl-…` id.
pub fn message_id(openai_id: &str) -> String {
    format!("msg_{}", openai_id.strip_prefix("chatcmpl-").unwrap_or(openai_id))
}

/// A tool-use id for a call the upstream sent without one.
pub(crate) fn fallback_tool_id(message_id: &str, index: usize) -> String {
    format!("toolu_{}_{index}", message_id.strip_prefix("msg_").unwrap_or(message_id))
}

/// The first choice of `c` as an Anthropic message. `matched_stop` is the stop sequence that
/// ended generation, when the backend reported it.
pub fn message_from_completion(c: &ChatCompletion, matched_stop: Option<&str>) -> Result<Message, ResponseError> {
    let choice = c.choices.first().ok_or(ResponseError::NoChoice)?;
    let id = message_id(&c.id);
    let mut content = Vec::new();
    if let Some(text) = choice.message.content.as_deref().filter(|t| !t.is_empty()) {
        content.push(ContentBlock::text(text));
    }
    let calls = choice.message.tool_calls.as_deref().unwrap_or_default();
    for (i, call) in calls.iter().enumerate() {
        content.push(tool_use(&id, i, call)?);
    }
    let (stop, sequence) = stop_reason(choice.finish_reason, !calls.is_empty(), matched_stop);
    let mut message = Message::new(id, c.model.clone(), content, usage(&c.usage));
    message.stop_reason = Some(stop);
    message.stop_sequence = sequence;
    Ok(message)
}

fn tool_use(message_id: &str, position: usize, call: &Value) -> Result<ContentBlock, ResponseError> {
    let view = ToolCallView::read(call, position);
    let input =
        arguments_object(view.arguments.unwrap_or("")).ok_or(ResponseError::ToolArguments { index: position })?;
    let id = view.id.map_or_else(|| fallback_tool_id(message_id, position), str::to_owned);
    Ok(ContentBlock::tool_use(id, view.name.unwrap_or_default(), Value::Object(input)))
}
