//! The Messages API response: a `Message` with content blocks, why it stopped, and usage.

use serde::{Deserialize, Serialize};

use super::content::ContentBlock;

/// A whole (non-streamed) answer; also the skeleton of `message_start` when streaming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `"assistant"`.
    pub role: String,
    pub content: Vec<ContentBlock>,
    pub model: String,
    /// `null` in `message_start`, set in the final answer and in `message_delta`.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that ended generation, when `stop_reason` is `stop_sequence`.
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

impl Message {
    /// An assistant message with the fixed `type` and `role`.
    pub fn new(id: String, model: String, content: Vec<ContentBlock>, usage: Usage) -> Self {
        Self {
            id,
            kind: "message".to_owned(),
            role: "assistant".to_owned(),
            content,
            model,
            stop_reason: None,
            stop_sequence: None,
            usage,
        }
    }
}

/// Why generation ended, in Anthropic's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// `max_tokens` was reached.
    MaxTokens,
    /// One of `stop_sequences` was produced.
    StopSequence,
    /// The model called a tool.
    ToolUse,
    /// A long-running turn was paused (server tools; never produced by ferrogate).
    PauseTurn,
    /// The output was refused (OpenAI's `content_filter`).
    Refusal,
}

/// Token usage. Anthropic's `input_tokens` excludes the tokens read from or written to its
/// prompt cache, which are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
}

/// The cumulative usage a `message_delta` carries: `output_tokens` always, the input counts when
/// known only at the end (OpenAI streams report them in the final chunk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaUsage {
    pub output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}
