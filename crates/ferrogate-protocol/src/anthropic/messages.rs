//! Anthropic turns → OpenAI chat messages: the system prompt, user turns (text and images, with
//! their `tool_result` blocks becoming `tool` messages), assistant turns (text and `tool_use`
//! blocks becoming `tool_calls`).
//!
//! Invariant: nothing a client sent is dropped silently except prompt-cache hints and echoed
//! `thinking` blocks; anything else that can not be carried is an [`InvalidParam`] naming its
//! path (`messages[2].content[0]`).

use serde_json::{Map, Value};

use super::content::{ContentBlock, InputBlock, ToolResultContent};
use super::request::{InputContent, InputMessage, InputRole, SystemPrompt};
use crate::openai::tools::function_call;
use crate::openai::{ChatMessage, ContentPart, InvalidParam, MessageContent, Role};

/// Text of several blocks is joined with this (Anthropic keeps blocks apart; OpenAI's string
/// content is one text).
const BLOCK_SEPARATOR: &str = "\n";

/// The `system` prompt as one system message; only text blocks are allowed.
pub(crate) fn system_message(system: &SystemPrompt) -> Result<ChatMessage, InvalidParam> {
    let text = match system {
        SystemPrompt::Text(s) => s.clone(),
        SystemPrompt::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match block {
                    InputBlock::Known(ContentBlock::Text { text, .. }) => texts.push(text.as_str()),
                    other => return Err(unsupported(&format!("system[{i}]"), other, "only text blocks")),
                }
            }
            texts.join(BLOCK_SEPARATOR)
        }
    };
    Ok(ChatMessage::new(Role::System, text))
}

/// One Anthropic turn as the OpenAI messages it becomes, in order.
pub(crate) fn turn(i: usize, m: &InputMessage) -> Result<Vec<ChatMessage>, InvalidParam> {
    let path = format!("messages[{i}]");
    match (&m.role, &m.content) {
        (InputRole::User, InputContent::Text(s)) => Ok(vec![ChatMessage::new(Role::User, s.clone())]),
        (InputRole::Assistant, InputContent::Text(s)) => Ok(vec![ChatMessage::new(Role::Assistant, s.clone())]),
        (InputRole::User, InputContent::Blocks(blocks)) => user_turn(&path, blocks),
        (InputRole::Assistant, InputContent::Blocks(blocks)) => assistant_turn(&path, blocks).map(|m| vec![m]),
    }
}

/// `tool_result` blocks become `tool` messages, placed first since OpenAI wants them right after
/// the assistant's `tool_calls`; the turn's text and images follow as one user message.
fn user_turn(path: &str, blocks: &[InputBlock]) -> Result<Vec<ChatMessage>, InvalidParam> {
    let mut out = Vec::new();
    let mut parts = Parts::default();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block {
            InputBlock::Known(ContentBlock::ToolResult { tool_use_id, content, is_error, .. }) => {
                out.push(tool_message(&path, tool_use_id, content.as_ref(), *is_error == Some(true))?);
            }
            InputBlock::Known(ContentBlock::Text { text, .. }) => parts.text(text),
            InputBlock::Known(ContentBlock::Image { source, .. }) => parts.image(source.to_url()),
            other => return Err(unsupported(&path, other, "text, image and tool_result blocks")),
        }
    }
    if !parts.is_empty() || out.is_empty() {
        out.push(ChatMessage { content: Some(parts.into_content()), ..ChatMessage::new(Role::User, "") });
    }
    Ok(out)
}

fn assistant_turn(path: &str, blocks: &[InputBlock]) -> Result<ChatMessage, InvalidParam> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block {
            InputBlock::Known(ContentBlock::Text { text, .. }) => texts.push(text.as_str()),
            InputBlock::Known(ContentBlock::ToolUse { id, name, input, .. }) => {
                calls.push(function_call(id, name, &input.to_string()));
            }
            InputBlock::Known(ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. }) => {}
            other => {
                return Err(unsupported(&format!("{path}.content[{j}]"), other, "text and tool_use blocks"));
            }
        }
    }
    let text = texts.join(BLOCK_SEPARATOR);
    let content = (!text.is_empty() || calls.is_empty()).then_some(MessageContent::Text(text));
    let tool_calls = (!calls.is_empty()).then_some(calls);
    Ok(ChatMessage { content, tool_calls, ..ChatMessage::new(Role::Assistant, "") })
}

/// A `tool_result` as a `tool` message. OpenAI has no error flag: an error result's text is
/// prefixed with `Error: ` so the model still learns the call failed.
fn tool_message(
    path: &str,
    tool_use_id: &str,
    content: Option<&ToolResultContent>,
    is_error: bool,
) -> Result<ChatMessage, InvalidParam> {
    let text = match content {
        None => String::new(),
        Some(ToolResultContent::Text(s)) => s.clone(),
        Some(ToolResultContent::Blocks(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, block) in blocks.iter().enumerate() {
                match block {
                    InputBlock::Known(ContentBlock::Text { text, .. }) => texts.push(text.as_str()),
                    other => {
                        let path = format!("{path}.content[{k}]");
                        return Err(unsupported(&path, other, "text blocks in a tool_result"));
                    }
                }
            }
            texts.join(BLOCK_SEPARATOR)
        }
    };
    let text = if is_error { format!("Error: {text}") } else { text };
    Ok(ChatMessage { tool_call_id: Some(tool_use_id.to_owned()), ..ChatMessage::new(Role::Tool, text) })
}

/// Block types serde knows: an `Other` block of one of these is malformed, not unsupported.
const KNOWN_KINDS: &[&str] = &["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"];

fn unsupported(path: &str, block: &InputBlock, allowed: &str) -> InvalidParam {
    let kind = crate::openai::shape::clip(block.kind());
    let message = match block {
        InputBlock::Other(_) if KNOWN_KINDS.contains(&block.kind()) => {
            format!("this '{kind}' block is malformed: a field is missing or has the wrong type")
        }
        _ => format!("'{kind}' blocks are not supported here: {allowed} are"),
    };
    InvalidParam::new(path, message)
}

/// A user turn's text and images: plain text when there is no image, OpenAI parts otherwise.
#[derive(Default)]
struct Parts {
    parts: Vec<ContentPart>,
    has_image: bool,
}

impl Parts {
    fn text(&mut self, text: &str) {
        self.parts.push(ContentPart { kind: "text".to_owned(), text: Some(text.to_owned()), rest: Map::new() });
    }

    fn image(&mut self, url: String) {
        let mut rest = Map::new();
        rest.insert("image_url".to_owned(), serde_json::json!({ "url": url }));
        self.parts.push(ContentPart { kind: "image_url".to_owned(), text: None, rest });
        self.has_image = true;
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    fn into_content(self) -> MessageContent {
        if self.has_image {
            return MessageContent::Parts(self.parts);
        }
        let texts: Vec<String> = self.parts.into_iter().filter_map(|p| p.text).collect();
        MessageContent::Text(texts.join(BLOCK_SEPARATOR))
    }
}

/// The first key of `map` that is not `allowed`: an unsupported field to refuse by name.
pub(crate) fn first_key(map: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    map.keys().find(|k| !allowed.contains(&k.as_str())).cloned()
}
