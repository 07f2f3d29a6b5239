//! What callers send (`GenerateRequest`) and what they get back on the stream (`GenEvent`).
//!
//! Plain data: validation happens in `Engine::submit`, rendering in `template`, sampling in
//! `sampling`. Defaults follow the OpenAI API (temperature 1, top_p 1, no penalties).

use crate::error::EngineError;
use crate::grammar::OutputFormat;

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    /// `None`: generate until an end-of-generation token or the end of the sequence's context.
    pub max_tokens: Option<u32>,
    /// Stop strings: matched across token boundaries and never emitted.
    pub stop: Vec<String>,
    /// Free text, JSON (object or schema) or tool calls: enforced by a grammar while sampling.
    pub output: OutputFormat,
    /// Report each generated token's log probability and this many alternatives (0..=20);
    /// `None`: no `Logprob` events.
    pub logprobs: Option<u8>,
}

impl GenerateRequest {
    /// A chat request with default sampling, no limit and no stop strings.
    pub fn chat(messages: Vec<serde_json::Value>) -> Self {
        Self::new(Prompt::Chat { messages, tools: None })
    }

    /// A raw-text request (no chat template) with default sampling.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Prompt::Text(text.into()))
    }

    fn new(prompt: Prompt) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            output: OutputFormat::Text,
            logprobs: None,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Prompt {
    /// Tokenized as is (special tokens in the text are parsed), no template.
    Text(String),
    /// OpenAI-shaped messages (`role`, `content`, optional `name`/`tool_calls`/`tool_call_id`),
    /// rendered with the model's chat template.
    Chat { messages: Vec<serde_json::Value>, tools: Option<serde_json::Value> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 selects greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling; 1 disables it.
    pub top_p: f32,
    /// 0 disables it.
    pub top_k: i32,
    /// 0 disables it.
    pub min_p: f32,
    /// Same seed + same prompt → same text. `None`: a random seed per request.
    pub seed: Option<u64>,
    /// llama.cpp's multiplicative repetition penalty over the last 64 tokens; 1 disables it.
    pub repeat_penalty: f32,
    /// OpenAI frequency penalty (-2..2); 0 disables it.
    pub frequency_penalty: f32,
    /// OpenAI presence penalty (-2..2); 0 disables it.
    pub presence_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: deterministic, the same text for the same prompt.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Checks ranges; the message names the offending parameter.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let finite = [
            self.temperature,
            self.top_p,
            self.min_p,
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !finite {
            return Err("sampling parameters must be finite numbers".into());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(format!("temperature must be in 0..=2, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.top_k < 0 {
            return Err(format!("top_k must be >= 0, got {}", self.top_k));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in 0..=1, got {}", self.min_p));
        }
        if self.repeat_penalty <= 0.0 {
            return Err(format!("repeat_penalty must be > 0, got {}", self.repeat_penalty));
        }
        for (name, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in -2..=2, got {v}"));
            }
        }
        Ok(())
    }
}

/// One event on a `Generation` stream: `Started`, then `Text`*, then exactly one of
/// `Done` or `Error`.
#[derive(Debug, Clone)]
pub enum GenEvent {
    /// The request got a slot; its prompt is being processed.
    Started {
        prompt_tokens: u32,
        /// Prompt tokens whose KV was reused from an earlier request (prefix cache).
        cached_tokens: u32,
    },
    /// A generated token's log probability (only when asked for), sent before the text that
    /// token is part of. End-of-generation tokens have none.
    Logprob(TokenLogprob),
    /// Newly generated text: complete UTF-8, never part of a stop string.
    Text(String),
    Done(Finish),
    Error(EngineError),
}

/// One token's log probability and the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's bytes (a token may end inside a UTF-8 character).
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// (bytes, logprob), most likely first.
    pub top: Vec<(Vec<u8>, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// max_tokens reached, or the end of the sequence's context.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(SamplingParams::greedy().validate().is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_parameter() {
        let bad = SamplingParams { top_p: 0.0, ..SamplingParams::default() };
        assert!(bad.validate().is_err_and(|e| e.contains("top_p")));
        let bad = SamplingParams { temperature: f32::NAN, ..SamplingParams::default() };
        assert!(bad.validate().is_err());
    }
}
