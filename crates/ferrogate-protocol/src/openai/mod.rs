//! OpenAI-compatible request, response and stream-chunk types.

pub mod chat;
pub mod completions;
pub mod conversations;
pub mod embeddings;
pub mod models;
pub mod responses;
pub mod shape;
pub mod tools;
pub mod usage;

pub use chat::*;
pub use completions::*;
pub use models::*;
pub use usage::*;

use serde::{Deserialize, Serialize};

/// `stop`: OpenAI accepts a single string or a list of up to four strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Why generation ended, in OpenAI's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
}

impl FinishReason {
    /// Maps free-form upstream reasons (Ollama's `done_reason`, TGI's `eos_token`) onto OpenAI's.
    pub fn from_upstream(s: &str) -> FinishReason {
        match s {
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "function_call" => FinishReason::FunctionCall,
            _ => FinishReason::Stop,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::FunctionCall => "function_call",
        }
    }
}

/// A validation failure that names the offending parameter (→ HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct InvalidParam {
    pub param: String,
    pub message: String,
}

impl InvalidParam {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self { param: param.into(), message: message.into() }
    }
}

/// Shared checks of sampling fields; `None` is always valid.
pub(crate) fn check_range(param: &str, value: Option<f32>, lo: f32, hi: f32) -> Result<(), InvalidParam> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) || v.is_nan() => Err(InvalidParam::new(
            param,
            format!("{v} is out of range for '{param}': expected a number from {lo} to {hi}"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn check_n(n: Option<u32>) -> Result<(), InvalidParam> {
    match n {
        None | Some(1) => Ok(()),
        Some(_) => Err(InvalidParam::new("n", "only n=1 is supported")),
    }
}

pub(crate) fn check_max_tokens(param: &str, v: Option<u32>) -> Result<(), InvalidParam> {
    match v {
        Some(0) => Err(InvalidParam::new(param, format!("'{param}' must be at least 1"))),
        _ => Ok(()),
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
