//! The engine's two error types: `EngineError` (lifecycle and inference) and `SubmitError`
//! (why a request was refused before anything was enqueued).
//!
//! Both say who is to blame and whether a retry may succeed, so the gateway can map them to
//! OpenAI errors and decide on failover without matching on message text.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The configuration cannot work; nothing was started.
    #[error("invalid engine config: {0}")]
    Config(String),
    /// The model is still loading (see `Engine::status`).
    #[error("the model is still loading")]
    Loading,
    /// Loading the model or creating its context failed; the engine will not serve.
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    /// The request cannot be turned into tokens (bad messages, template error).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// llama.cpp failed while computing this sequence.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The scheduler thread is gone (engine dropped or crashed).
    #[error("the engine has stopped")]
    Stopped,
}

impl EngineError {
    /// True when the caller's input is at fault (a 4xx), false for engine-side faults.
    pub fn is_caller_fault(&self) -> bool {
        matches!(self, Self::InvalidRequest(_))
    }

    /// True when the same request may succeed later or elsewhere.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Loading | Self::Inference(_) | Self::Stopped => true,
            Self::Config(_) | Self::LoadFailed(_) | Self::InvalidRequest(_) => false,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The model is loading (`/ready` says 503 `loading`).
    #[error("the model is still loading")]
    NotReady,
    /// Every slot is busy and the waiting queue is full.
    #[error("the engine queue is full; retry after {}s", retry_after.as_secs())]
    QueueFull {
        /// An estimate of when a place frees up (at least one second).
        retry_after: Duration,
    },
    /// prompt + max_tokens does not fit the per-sequence context.
    #[error(
        "this model's context per sequence is {context} tokens; the prompt has {prompt_tokens} \
         and max_tokens asks for {max_tokens} more"
    )]
    ContextLengthExceeded { prompt_tokens: u32, max_tokens: u32, context: u32 },
    /// The prompt's length in bytes alone proves it longer than the context: refused before
    /// tokenizing (`LoadedModel::provably_over`).
    #[error(
        "this model's context per sequence is {context} tokens; the prompt ({bytes} bytes) is \
         longer than that many tokens can be"
    )]
    PromptTooLong { bytes: usize, context: u32 },
    /// Parameters out of range, empty prompt, template failure.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The engine cannot serve at all (load failed, stopped).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl SubmitError {
    pub fn is_caller_fault(&self) -> bool {
        matches!(self, Self::ContextLengthExceeded { .. } | Self::PromptTooLong { .. } | Self::InvalidRequest(_))
    }

    pub fn retryable(&self) -> bool {
        match self {
            Self::NotReady | Self::QueueFull { .. } => true,
            Self::ContextLengthExceeded { .. } | Self::PromptTooLong { .. } | Self::InvalidRequest(_) => false,
            Self::Engine(e) => e.retryable(),
        }
    }
}
