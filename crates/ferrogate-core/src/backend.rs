//! The `Backend` trait: one small interface over every inference engine (OpenAI-compatible HTTP,
//! Ollama, the embedded llama.cpp engine).
//!
//! Invariant: every method is cancellation-safe — dropping a returned future or stream aborts the
//! upstream work (closes the connection, frees the engine slot).

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_protocol::openai::{ChatMessage, FinishReason, Usage};
use futures::Stream;
use serde_json::{Map, Value};

use crate::blame::Blame;

/// A normalized inference request, already routed: `model` is the upstream's model name.
#[derive(Debug, Clone)]
pub struct InferenceRequest {
    /// Propagated upstream as `X-Request-Id`; shared with the request's context (no copy).
    pub request_id: std::sync::Arc<str>,
    pub model: String,
    pub input: Input,
    pub params: GenParams,
    /// Client fields ferrogate does not interpret (response_format, logit_bias, …), forwarded to
    /// HTTP upstreams verbatim.
    pub extra: Map<String, Value>,
    /// Trace headers to forward and the engine phase recorder (observability only).
    pub obs: crate::obs::RequestObs,
    /// The client reads OpenAI chat completions: a backend whose upstream writes them may hand
    /// them over as they came — a stream's chunks as [`StreamEvent::Frame`]s, a whole answer as
    /// [`Completion::raw`] — instead of only decoding them.
    pub passthrough: bool,
}

#[derive(Debug, Clone)]
pub enum Input {
    /// A conversation, rendered by the backend's chat template.
    Chat { messages: Vec<ChatMessage>, tools: Option<Value>, tool_choice: Option<Value> },
    /// A raw prompt (legacy completions): no template applied.
    Text(String),
}

/// Sampling and length controls. `None` means the backend's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenParams {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub user: Option<String>,
}

/// An embeddings request, already routed: `model` is the upstream's model name.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    /// Propagated upstream as `X-Request-Id`.
    pub request_id: String,
    pub model: String,
    /// One vector is asked for per input, in order.
    pub inputs: Vec<EmbedItem>,
    /// Output size asked for (models that support shortening, e.g. OpenAI's v3); `None`: native.
    pub dimensions: Option<u32>,
    pub user: Option<String>,
}

/// One input to embed: text, or token ids in the model's own vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedItem {
    Text(String),
    Tokens(Vec<i64>),
}

/// The vectors of an [`EmbedRequest`], one per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedOutput {
    pub vectors: Vec<Vec<f32>>,
    /// The upstream's own count; `None` when it reported none (then counted locally).
    pub prompt_tokens: Option<u32>,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Option<Vec<Value>>,
    /// OpenAI's `choices[].logprobs.content`: one entry per token, when the client asked.
    pub logprobs: Option<Vec<Value>>,
    pub finish_reason: FinishReason,
    /// The upstream's own counts; `None` when it reported none (then counted locally).
    pub usage: Option<Usage>,
    /// The upstream's OpenAI chat completion as it came (only when the request asked for
    /// `passthrough`, see [`crate::chunk`]); the fields above are read from it.
    pub raw: Option<crate::chunk::RawCompletion>,
}

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// `logprobs`: OpenAI's `logprobs.content` entries of the tokens in this delta, when asked.
    Delta {
        text: String,
        tool_calls: Option<Vec<Value>>,
        logprobs: Option<Vec<Value>>,
    },
    Finish(FinishReason),
    Usage(Usage),
    /// An upstream OpenAI chat chunk passed through as bytes (only when the request asked for
    /// `passthrough`); it stands for the delta and/or finish it carries.
    Frame(crate::chunk::RawChunk),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, BackendError>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Reachable but not able to serve yet (model loading, model not pulled).
    NotReady(String),
    Unhealthy(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    /// The state as a closed label (`healthy`, `not_ready`, `unhealthy`), for logs and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::NotReady(_) => "not_ready",
            Health::Unhealthy(_) => "unhealthy",
        }
    }

    /// Why it is not healthy; empty when it is.
    pub fn reason(&self) -> &str {
        match self {
            Health::Healthy => "",
            Health::NotReady(why) | Health::Unhealthy(why) => why,
        }
    }
}

/// Whether a backend's model is in memory (backends that load and unload models: the embedded
/// engine with `load = "on_demand"` or a `keep_alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Loaded,
    Loading,
    /// Not in memory; the next request loads it.
    Unloaded,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Loaded => "loaded",
            ModelState::Loading => "loading",
            ModelState::Unloaded => "unloaded",
        }
    }

    /// The state of a model served by several backends: loaded if any has it loaded, else
    /// loading if any is loading; `None` when no backend knows (HTTP upstreams).
    pub fn of_any(states: impl IntoIterator<Item = Option<ModelState>>) -> Option<ModelState> {
        states.into_iter().flatten().min_by_key(|s| match s {
            ModelState::Loaded => 0,
            ModelState::Loading => 1,
            ModelState::Unloaded => 2,
        })
    }
}

/// What a backend can do; the server refuses requests a backend cannot serve (400, not 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub chat: bool,
    pub text_completion: bool,
    pub tools: bool,
    pub images: bool,
    /// Reports exact token usage (otherwise tokens are counted locally).
    pub usage: bool,
    /// Returns `logprobs`/`top_logprobs` for chat answers (otherwise they are refused, 400).
    pub logprobs: bool,
    /// Serves `embed` (an embedding model, or an upstream that may have one).
    pub embeddings: bool,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The configured backend name (a closed set: it labels metrics and logs).
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// The untyped client fields (beyond [`GenParams`] and the input) this kind of backend
    /// accepts; a request carrying any other is refused, unless its deployment has
    /// `extra_body = true`. Default: OpenAI's documented request fields.
    fn accepted_fields(&self) -> &'static [&'static str] {
        ferrogate_protocol::openai::shape::OPENAI_EXTRA_FIELDS
    }
    async fn chat(&self, req: InferenceRequest) -> Result<Completion, BackendError>;
    /// Resolves once the upstream has accepted the request (status known); events follow.
    async fn chat_stream(&self, req: InferenceRequest) -> Result<EventStream, BackendError>;
    /// Vectors for the inputs; only backends whose capabilities say `embeddings` serve it.
    async fn embed(&self, req: EmbedRequest) -> Result<EmbedOutput, BackendError> {
        let _ = req;
        Err(BackendError::InvalidRequest {
            param: Some("model".into()),
            message: format!("backend '{}' does not serve embeddings", self.name()),
        })
    }
    async fn health(&self) -> Health;
    /// Model names the upstream serves.
    async fn models(&self) -> Result<Vec<String>, BackendError>;
    /// Requests the backend runs in parallel, when it knows (the embedded engine's slots, once
    /// its model is loaded); sizes the deployment's default concurrency.
    fn parallel_slots(&self) -> Option<usize> {
        None
    }
    /// The engine's gauges and counters, for backends that run one in process (the embedded
    /// engine); `None` for HTTP upstreams.
    fn stats(&self) -> Option<crate::obs::BackendStats> {
        None
    }
    /// Whether its model is in memory, for backends that load and unload models; `None`: the
    /// backend does not say (HTTP upstreams, and models that are always loaded).
    fn model_state(&self) -> Option<ModelState> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    Connect,
    FirstToken,
    InterToken,
    Total,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect",
            TimeoutKind::FirstToken => "first_token",
            TimeoutKind::InterToken => "inter_token",
            TimeoutKind::Total => "total",
        }
    }
}

/// What went wrong talking to a backend. Messages are safe to show clients only where
/// [`BackendError::public_message`] says so; the Display text is for logs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("cannot reach upstream: {0}")]
    Connect(String),
    /// The request was sent on a kept-alive connection that the upstream closed before any byte
    /// of a response — usually a connection the server was closing as it was reused (llama.cpp's
    /// server closes one after a streamed answer, others after their idle timeout). Worth one
    /// more try on the same backend over a fresh connection (`dispatch`), as Go's HTTP client
    /// does for a reused connection closed before the response.
    #[error("upstream closed the connection without a response: {0}")]
    Closed(String),
    #[error("upstream timed out ({})", .0.as_str())]
    Timeout(TimeoutKind),
    #[error("upstream answered HTTP {status}: {message}")]
    Status { status: u16, message: String, retry_after: Option<Duration> },
    #[error("upstream sent an invalid response: {0}")]
    Protocol(String),
    #[error("backend overloaded: {message}")]
    Overloaded { message: String, retry_after: Duration },
    #[error("{message}")]
    ContextLength { message: String },
    #[error("{message}")]
    InvalidRequest { param: Option<String>, message: String },
    #[error("backend not ready: {0}")]
    NotReady(String),
    #[error("backend failed: {0}")]
    Internal(String),
}

impl BackendError {
    /// Who caused it: only upstream faults count against a backend's health.
    pub fn blame(&self) -> Blame {
        match self {
            BackendError::Connect(_)
            | BackendError::Closed(_)
            | BackendError::Timeout(_)
            | BackendError::Protocol(_)
            | BackendError::Overloaded { .. }
            | BackendError::NotReady(_)
            | BackendError::Internal(_) => Blame::Upstream,
            BackendError::Status { status, .. }
                if (400..500).contains(status) && ![401, 403, 404, 408, 429].contains(status) =>
            {
                Blame::Caller
            }
            BackendError::Status { .. } => Blame::Upstream,
            BackendError::ContextLength { .. } | BackendError::InvalidRequest { .. } => Blame::Caller,
        }
    }

    /// Whether this failure counts against the backend's circuit breaker: upstream faults only
    /// (connect errors, 5xx, timeouts, garbage) — not client errors, and not 429 / overload,
    /// which say the backend is busy rather than broken (the queue and retries handle those).
    pub fn trips_breaker(&self) -> bool {
        match self {
            BackendError::Overloaded { .. } => false,
            BackendError::Status { status: 429, .. } => false,
            _ => self.blame() == Blame::Upstream,
        }
    }

    /// Whether another attempt (same or other backend) may succeed. Only before the first byte.
    pub fn retryable(&self) -> bool {
        match self {
            BackendError::Connect(_)
            | BackendError::Closed(_)
            | BackendError::Overloaded { .. }
            | BackendError::NotReady(_) => true,
            BackendError::Timeout(k) => *k == TimeoutKind::Connect,
            BackendError::Status { status, .. } => *status == 429 || *status >= 500,
            BackendError::Protocol(_)
            | BackendError::ContextLength { .. }
            | BackendError::InvalidRequest { .. }
            | BackendError::Internal(_) => false,
        }
    }
}
