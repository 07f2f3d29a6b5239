//! Sentence embeddings on llama.cpp: a BERT-family GGUF (all-MiniLM-L6-v2, converted by
//! `scripts/bert-to-gguf.py`) run by one dedicated thread that owns its llama context, fed
//! through a bounded channel. The thread batches: every job waiting when it wakes (up to
//! `max_batch_inputs` inputs) is tokenized and packed into as few `llama_decode` calls as the
//! token budget allows, one sequence per input; each sequence's pooled vector is L2-normalized
//! (as sentence-transformers' `Normalize` module does), so a dot product is a cosine.
//!
//! Invariants: nothing here blocks async code (submission is a `try_send`, the answer a oneshot);
//! a job whose caller went away is skipped before it is computed; an input too long for the model
//! is refused (never truncated silently), naming its index.

mod worker;

use std::path::PathBuf;

use tokio::sync::{oneshot, watch};

use crate::error::EngineError;

/// How the embedding model runs (`[backends.<name>]` with `kind = "embedded_embeddings"`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// A GGUF with a pooling type (absolute, or relative to [`crate::model_dir`]).
    pub model_path: PathBuf,
    /// CPU threads for llama.cpp; `None`: every core.
    pub threads: Option<usize>,
    /// Tokens one `llama_decode` takes (the context size too): bounds memory, and the longest
    /// input is the smaller of this and the model's trained context.
    pub batch_tokens: u32,
    /// Inputs (sequences) one decode carries at most.
    pub max_batch_inputs: usize,
    /// Jobs waiting for the thread before new ones are refused (`QueueFull`).
    pub queue_size: usize,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self { model_path: PathBuf::new(), threads: None, batch_tokens: 2048, max_batch_inputs: 64, queue_size: 256 }
    }
}

impl EmbedConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self { model_path: model_path.into(), ..Self::default() }
    }
}

/// One input: text, or token ids of the model's own vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<i64>),
}

/// The answer to one job: one unit vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the inputs took (special tokens included), the request's usage.
    pub prompt_tokens: u32,
}

/// What the loaded model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedModelInfo {
    pub name: String,
    pub architecture: String,
    pub dimensions: usize,
    /// The longest input in tokens.
    pub max_input_tokens: u32,
}

/// Why a job was refused or failed; says who is at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding model is still loading")]
    NotReady,
    #[error("the embedding queue is full")]
    QueueFull,
    #[error("input {index} has {tokens} tokens; this model takes at most {max}")]
    TooLong { index: usize, tokens: usize, max: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Debug, Clone)]
enum State {
    Loading,
    Ready(EmbedModelInfo),
    Failed(EngineError),
}

struct Job {
    inputs: Vec<EmbedInput>,
    reply: oneshot::Sender<Result<Embeddings, EmbedError>>,
}

/// The handle: cheap to share behind an `Arc`; dropping the last one stops the thread.
pub struct Embedder {
    tx: std::sync::mpsc::SyncSender<Job>,
    state: watch::Receiver<State>,
}

impl Embedder {
    /// Starts the thread, which loads the model (see [`Embedder::wait_ready`]).
    pub fn start(cfg: EmbedConfig) -> Result<Self, EngineError> {
        if cfg.batch_tokens < 8 || cfg.max_batch_inputs == 0 || cfg.queue_size == 0 {
            return Err(EngineError::Config(
                "embedding batch_tokens must be at least 8, max_batch_inputs and queue_size at least 1".into(),
            ));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue_size);
        let (state_tx, state) = watch::channel(State::Loading);
        std::thread::Builder::new()
            .name("ferrogate-embed".into())
            .spawn(move || worker::run(cfg, rx, state_tx))
            .map_err(|e| EngineError::Config(format!("cannot start the embedding thread: {e}")))?;
        Ok(Self { tx, state })
    }

    /// Resolves once the model is loaded (or failed to).
    pub async fn wait_ready(&self) -> Result<EmbedModelInfo, EngineError> {
        let mut state = self.state.clone();
        let result = state.wait_for(|s| !matches!(s, State::Loading)).await;
        match result.as_deref() {
            Ok(State::Ready(info)) => Ok(info.clone()),
            Ok(State::Failed(e)) => Err(e.clone()),
            Ok(State::Loading) | Err(_) => Err(EngineError::Stopped),
        }
    }

    /// The model, once loaded; `Err` with the reason it is not serving.
    pub fn status(&self) -> Result<EmbedModelInfo, EngineError> {
        match &*self.state.borrow() {
            State::Ready(info) => Ok(info.clone()),
            State::Loading => Err(EngineError::Loading),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// Embeds `inputs` (batched with whatever else is waiting). Dropping the future before it
    /// resolves withdraws the job if it has not started.
    pub async fn embed(&self, inputs: Vec<EmbedInput>) -> Result<Embeddings, EmbedError> {
        match self.status() {
            Ok(_) => {}
            Err(EngineError::Loading) => return Err(EmbedError::NotReady),
            Err(e) => return Err(e.into()),
        }
        if inputs.is_empty() {
            return Ok(Embeddings { vectors: Vec::new(), prompt_tokens: 0 });
        }
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(Job { inputs, reply }).map_err(|e| match e {
            std::sync::mpsc::TrySendError::Full(_) => EmbedError::QueueFull,
            std::sync::mpsc::TrySendError::Disconnected(_) => EmbedError::Engine(EngineError::Stopped),
        })?;
        answer.await.unwrap_or(Err(EmbedError::Engine(EngineError::Stopped)))
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    #[test]
    fn refuses_a_config_that_cannot_work() {
        let mut cfg = EmbedConfig::new("x.gguf");
        cfg.max_batch_inputs = 0;
        assert!(matches!(Embedder::start(cfg), Err(EngineError::Config(_))));
    }
}
