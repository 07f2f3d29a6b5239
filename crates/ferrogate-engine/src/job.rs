//! What the `Engine` handle and the scheduler thread share: the engine's state and the job a
//! handle sends. Below both, so neither imports the other's file.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc as tokio_mpsc, watch};

use crate::config::Resolved;
use crate::model::LoadedModel;
use crate::request::{GenEvent, SamplingParams};
use crate::stats::{EngineStatus, ModelInfo, Stats};

/// State shared by the handle and the scheduler thread.
pub(crate) struct Shared {
    pub cfg: Resolved,
    pub status: watch::Sender<EngineStatus>,
    /// Set by the scheduler once loaded; read by callers to tokenize.
    pub model: OnceLock<Arc<LoadedModel>>,
    pub info: OnceLock<ModelInfo>,
    pub stats: Stats,
}

/// A validated, tokenized request on its way to the scheduler.
pub(crate) struct Job {
    pub tokens: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// The output grammar's sampler (compiled at submit), applied before the others.
    pub grammar: Option<LlamaSampler>,
    /// Alternatives per token when log probabilities are asked for.
    pub logprobs: Option<u8>,
    pub tx: tokio_mpsc::UnboundedSender<GenEvent>,
    pub submitted: Instant,
}
