//! `Engine`: the cheap, cloneable handle async code holds. It validates and tokenizes on the
//! caller's thread — CPU work in proportion to the prompt, so async callers call `submit` from a
//! blocking thread (`spawn_blocking`), never a runtime worker — then hands the job to the
//! scheduler thread over a channel; it never blocks on inference and never touches the llama
//! context. A prompt whose length alone proves it too long is refused before tokenizing.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::{mpsc as tokio_mpsc, watch};

use crate::config::{EngineConfig, resolve};
use crate::error::{EngineError, SubmitError};
use crate::ffi;
use crate::generation::Generation;
use crate::grammar::{self, OutputFormat};
use crate::job::{Job, Shared};
use crate::model::LoadedModel;
use crate::request::{GenerateRequest, Prompt};
use crate::scheduler;
use crate::stats::{EngineStats, EngineStatus, ModelInfo, Stats};
use llama_cpp_2::sampling::LlamaSampler;

/// The embedded llama.cpp engine. Clones share one model, one context and one scheduler.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Dropping the last handle closes this: the scheduler finishes its work and exits.
    jobs: Sender<Job>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model_path", &self.inner.shared.cfg.model_path)
            .field("status", &self.status())
            .finish()
    }
}

impl Engine {
    /// Returns at once; the model loads on the scheduler thread (`status()` is `Loading` until
    /// then). Fails only for an invalid config.
    pub fn start(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let cfg = resolve(cfg)?;
        let (status, _) = watch::channel(EngineStatus::Loading);
        let shared =
            Arc::new(Shared { cfg, status, model: OnceLock::new(), info: OnceLock::new(), stats: Stats::default() });
        let (jobs, rx) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("ferrogate-engine".into())
            .spawn(move || scheduler::run(thread_shared, rx))
            .map_err(|e| EngineError::LoadFailed(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Engine { inner: Arc::new(Inner { shared, jobs }) })
    }

    pub fn status(&self) -> EngineStatus {
        self.shared().status.borrow().clone()
    }

    /// Waits until the model is loaded and warmed up, or fails with why it could not be.
    pub async fn wait_ready(&self) -> Result<(), EngineError> {
        let mut rx = self.shared().status.subscribe();
        let status = rx.wait_for(|s| *s != EngineStatus::Loading).await.map_err(|_| EngineError::Stopped)?;
        match &*status {
            EngineStatus::Ready => Ok(()),
            EngineStatus::Failed(msg) => Err(EngineError::LoadFailed(msg.clone())),
            EngineStatus::Loading => Err(EngineError::Loading),
        }
    }

    /// Drops this handle and waits until the scheduler thread has exited and freed the model and
    /// its context — which it does once every clone of the handle is gone and its work is done.
    pub async fn unload(self) {
        let mut status = self.shared().status.subscribe();
        drop(self);
        // The sender lives in `Shared`, which goes when the thread and the last handle have.
        while status.changed().await.is_ok() {}
    }

    pub fn model_info(&self) -> Option<ModelInfo> {
        self.shared().info.get().cloned()
    }

    pub fn stats(&self) -> EngineStats {
        self.shared().stats.snapshot()
    }

    /// Validates, tokenizes and enqueues. Refuses at once, without enqueueing, when the engine
    /// is not ready, the queue is full, or prompt + max_tokens exceeds the context — before
    /// tokenizing when the rendered prompt's bytes alone prove it (`PromptTooLong`). Costs CPU
    /// in proportion to the prompt: call it from a blocking thread.
    pub fn submit(&self, req: GenerateRequest) -> Result<Generation, SubmitError> {
        let model = self.ready_model()?;
        req.sampling.validate().map_err(SubmitError::InvalidRequest)?;
        if req.logprobs.is_some_and(|k| k > crate::logprobs::MAX_TOP_LOGPROBS) {
            let max = crate::logprobs::MAX_TOP_LOGPROBS;
            return Err(SubmitError::InvalidRequest(format!("top_logprobs must be in 0..={max}")));
        }
        let grammar = compile_grammar(model, &req.output)?;
        let prompt = match (req.prompt, &req.output) {
            (Prompt::Chat { messages, tools }, OutputFormat::Tools(spec)) => {
                let _ = tools; // the engine's own tool protocol replaces the template's
                Prompt::Chat { messages: grammar::tools::prepare(&messages, Some(spec)), tools: None }
            }
            (Prompt::Chat { messages, tools }, _) => {
                Prompt::Chat { messages: grammar::tools::prepare(&messages, None), tools }
            }
            (text, _) => text,
        };
        let text = model.render(&prompt).map_err(invalid)?;
        let context = self.shared().cfg.ctx_per_seq;
        if model.provably_over(&text, context) {
            return Err(SubmitError::PromptTooLong { bytes: text.len(), context });
        }
        let tokens = model.tokenize(&text, true).map_err(invalid)?;
        let max_tokens = self.budget(tokens.len(), req.max_tokens)?;
        let shared = self.shared();
        let parallel = shared.info.get().map_or(1, |i| i.parallel);
        if !shared.stats.try_reserve(parallel + shared.cfg.queue_size) {
            return Err(SubmitError::QueueFull { retry_after: shared.stats.retry_after(parallel) });
        }
        let (tx, rx) = tokio_mpsc::unbounded_channel();
        let job = Job {
            tokens,
            max_tokens,
            sampling: req.sampling,
            stop: req.stop,
            grammar,
            logprobs: req.logprobs,
            tx,
            submitted: Instant::now(),
        };
        if self.inner.jobs.send(job).is_err() {
            shared.stats.release(None);
            return Err(SubmitError::Engine(EngineError::Stopped));
        }
        Ok(Generation::new(rx))
    }

    /// Tokens in `text` as is (no BOS, special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        let model = self.loaded_model()?;
        Ok(model.tokenize(text, false)?.len())
    }

    /// Tokens the engine will feed for `prompt` (template and BOS included): the exact
    /// `prompt_tokens` a request with it reports.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        Ok(self.loaded_model()?.prompt_tokens(prompt)?.len())
    }

    /// The prompt as text after the chat template (for logs and debugging).
    pub fn render_prompt(&self, prompt: &Prompt) -> Result<String, EngineError> {
        self.loaded_model()?.render(prompt)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn loaded_model(&self) -> Result<&Arc<LoadedModel>, EngineError> {
        match self.shared().model.get() {
            Some(model) => Ok(model),
            None => match self.status() {
                EngineStatus::Failed(msg) => Err(EngineError::LoadFailed(msg)),
                EngineStatus::Loading | EngineStatus::Ready => Err(EngineError::Loading),
            },
        }
    }

    fn ready_model(&self) -> Result<&Arc<LoadedModel>, SubmitError> {
        match self.status() {
            EngineStatus::Ready => self.loaded_model().map_err(SubmitError::from),
            EngineStatus::Loading => Err(SubmitError::NotReady),
            EngineStatus::Failed(msg) => Err(SubmitError::Engine(EngineError::LoadFailed(msg))),
        }
    }

    /// The exact completion budget: max_tokens, or the rest of the sequence's context.
    fn budget(&self, prompt_len: usize, max_tokens: Option<u32>) -> Result<u32, SubmitError> {
        let context = self.shared().cfg.ctx_per_seq;
        let prompt_tokens = u32::try_from(prompt_len).unwrap_or(u32::MAX);
        if prompt_tokens == 0 {
            return Err(SubmitError::InvalidRequest("the prompt is empty".into()));
        }
        if max_tokens == Some(0) {
            return Err(SubmitError::InvalidRequest("max_tokens must be at least 1".into()));
        }
        let room = context.saturating_sub(prompt_tokens);
        let wanted = max_tokens.unwrap_or(room.max(1));
        if u64::from(prompt_tokens) + u64::from(wanted) > u64::from(context) {
            return Err(SubmitError::ContextLengthExceeded { prompt_tokens, max_tokens: wanted, context });
        }
        Ok(wanted)
    }
}

/// The output format's grammar as a sampler; an unsupported schema or a grammar llama.cpp
/// cannot parse is the caller's error.
fn compile_grammar(model: &LoadedModel, output: &OutputFormat) -> Result<Option<LlamaSampler>, SubmitError> {
    let Some(gbnf) = output.grammar().map_err(|e| SubmitError::InvalidRequest(e.to_string()))? else {
        return Ok(None);
    };
    let sampler = ffi::guarded("grammar", || LlamaSampler::grammar(&model.llama, &gbnf, "root"))
        .map_err(SubmitError::Engine)?
        .map_err(|e| SubmitError::InvalidRequest(format!("the output grammar cannot be compiled: {e}")))?;
    Ok(Some(sampler))
}

fn invalid(e: EngineError) -> SubmitError {
    match e {
        EngineError::InvalidRequest(msg) => SubmitError::InvalidRequest(msg),
        other => SubmitError::Engine(other),
    }
}
