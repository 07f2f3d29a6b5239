//! `POST /v1/completions`: the legacy text-completion API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::shape;
use super::{FinishReason, InvalidParam, Stop, StreamOptions, Usage, check_max_tokens, check_n, check_range};

/// OpenAI's default `max_tokens` for legacy completions.
pub const LEGACY_DEFAULT_MAX_TOKENS: u32 = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `prompt`: a string or a list holding exactly one string (batched prompts are not supported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    One(String),
    Many(Vec<String>),
}

impl CompletionRequest {
    pub fn validate(&self) -> Result<(), InvalidParam> {
        shape::check_model(&self.model)?;
        if let PromptInput::Many(v) = &self.prompt
            && v.len() != 1
        {
            return Err(InvalidParam::new("prompt", "'prompt' must be a string or a list of exactly one string"));
        }
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("min_p", self.min_p, 0.0, 1.0)?;
        check_max_tokens("max_tokens", self.max_tokens)?;
        shape::check_stop(self.stop.as_ref())?;
        shape::check_extra(&self.extra)?;
        check_n(self.n)?;
        if self.echo == Some(true) {
            return Err(InvalidParam::new("echo", "'echo' is not supported"));
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(InvalidParam::new("stream_options", "'stream_options' is only allowed when 'stream' is true"));
        }
        Ok(())
    }

    pub fn prompt_text(&self) -> &str {
        match &self.prompt {
            PromptInput::One(s) => s,
            PromptInput::Many(v) => v.first().map_or("", String::as_str),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    #[serde(default)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<FinishReason>,
}
