//! The embedded backend: ferrogate's own llama.cpp engine behind the `Backend` trait.
//!
//! The model is one of the process's `ModelPool`: loaded at start (`load = "hot"`) or by the
//! first request that needs it (`"on_demand"`), unloaded after `keep_alive` idle. A request for
//! a model not loaded waits for the load (up to `load_timeout_ms`, then 503).
//!
//! Invariants: dropping a request's future or stream drops the engine `Generation`, which frees
//! the sequence slot and its KV cache at the scheduler's next step; a request holds its
//! `ModelLease` as long as its `Generation`, so its model is never unloaded under it; rendering
//! and tokenizing a prompt run on a blocking thread, never on a runtime worker.

mod answer;
mod convert;
pub mod embeddings;
mod output;
pub mod source;

use async_trait::async_trait;
use std::sync::Arc;

use ferrogate_core::{
    Backend, BackendError, BackendStats, Capabilities, Completion, EnginePhases, EventStream, Health, InferenceRequest,
    ModelState, StreamEvent,
};
use ferrogate_engine::{
    Engine, EngineConfig, EngineStatus, GenEvent, GenerateRequest, LoadMode, ManagedEngine, ModelLease, ModelPool,
    ModelState as EngineModelState,
};

use answer::AnswerState;
use futures::StreamExt;

pub use convert::{to_generate_request, usage_of};

pub struct EmbeddedBackend {
    name: String,
    model: ManagedEngine,
}

impl EmbeddedBackend {
    /// Adds the model to `pool`: a `hot` one starts loading in the background (health says
    /// NotReady until done), an `on_demand` one waits for its first request.
    pub fn start(name: &str, cfg: EngineConfig, pool: &ModelPool) -> Result<Self, String> {
        let model = pool.register(cfg).map_err(|e| e.to_string())?;
        Ok(Self { name: name.to_owned(), model })
    }

    /// The engine while the model is loaded, for its stats (slots, KV, tokens) and model info.
    pub fn engine(&self) -> Option<Engine> {
        self.model.engine()
    }

    /// Loads and unloads of the model since start.
    pub fn load_counts(&self) -> (u64, u64) {
        self.model.load_counts()
    }

    /// Renders, tokenizes and enqueues on a blocking thread: a prompt of megabytes costs CPU
    /// there, not on a runtime worker that other requests' futures need. Dropped before it
    /// finishes, the `Generation` it made is dropped too, which frees its slot.
    async fn submit(
        &self,
        gen_req: GenerateRequest,
        phases: Option<&Arc<EnginePhases>>,
    ) -> Result<(ferrogate_engine::Generation, ModelLease), BackendError> {
        let lease = self.model.acquire().await.map_err(convert::acquire_error)?;
        if let Some(p) = phases {
            EnginePhases::mark(&p.submitted);
        }
        let engine = lease.engine().clone();
        let generation = tokio::task::spawn_blocking(move || engine.submit(gen_req))
            .await
            .map_err(|e| BackendError::Internal(format!("the engine's submit task failed: {e}")))?
            .map_err(convert::submit_error)?;
        Ok((generation, lease))
    }
}

/// Records the engine's phase boundaries for a sampled request's trace (`None`: not sampled).
fn mark_phase(phases: Option<&Arc<EnginePhases>>, ev: &GenEvent) {
    let Some(p) = phases else { return };
    match ev {
        GenEvent::Started { .. } => EnginePhases::mark(&p.started),
        GenEvent::Logprob(_) => {}
        GenEvent::Text(_) => EnginePhases::mark(&p.first_token),
        GenEvent::Done(_) | GenEvent::Error(_) => EnginePhases::mark(&p.done),
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn capabilities(&self) -> Capabilities {
        // Tool calls: grammar-constrained envelope, parsed back into `tool_calls` (grammar::tools).
        Capabilities {
            chat: true,
            text_completion: true,
            tools: true,
            images: false,
            usage: true,
            logprobs: true,
            embeddings: false,
        }
    }

    async fn chat(&self, req: InferenceRequest) -> Result<Completion, BackendError> {
        let (phases, request_id) = (req.obs.phases.clone(), req.request_id.clone());
        let gen_req = to_generate_request(req)?;
        let mut answer = AnswerState::new(request_id, &gen_req.output);
        let (mut generation, _lease) = self.submit(gen_req, phases.as_ref()).await?;
        while let Some(ev) = generation.next().await {
            mark_phase(phases.as_ref(), &ev);
            match ev {
                GenEvent::Started { .. } => {}
                GenEvent::Logprob(lp) => answer.logprob(&lp),
                GenEvent::Text(t) => answer.push_text(&t),
                GenEvent::Done(f) => return answer.complete(&f),
                GenEvent::Error(e) => return Err(convert::engine_error(e)),
            }
        }
        Err(BackendError::Internal("the engine ended the request without a result".into()))
    }

    async fn chat_stream(&self, req: InferenceRequest) -> Result<EventStream, BackendError> {
        let (phases, request_id) = (req.obs.phases.clone(), req.request_id.clone());
        let gen_req = to_generate_request(req)?;
        let mut answer = AnswerState::new(request_id, &gen_req.output);
        let (generation, lease) = self.submit(gen_req, phases.as_ref()).await?;
        let events = generation.flat_map(move |ev| {
            let _held = &lease; // the model stays loaded while the stream lives
            mark_phase(phases.as_ref(), &ev);
            let items: Vec<Result<StreamEvent, BackendError>> = match ev {
                GenEvent::Started { .. } => vec![],
                GenEvent::Logprob(lp) => {
                    answer.logprob(&lp);
                    vec![]
                }
                GenEvent::Text(text) => answer.stream_text(text),
                GenEvent::Done(f) => answer.stream_end(&f),
                GenEvent::Error(e) => vec![Err(convert::engine_error(e))],
            };
            futures::stream::iter(items)
        });
        Ok(Box::pin(events))
    }

    /// A hot model is not ready until loaded; an on-demand one serves (by loading) whenever it
    /// is not failed, so `/ready` stays 200 while it is unloaded.
    async fn health(&self) -> Health {
        match (self.model.state(), self.model.load_mode()) {
            (EngineModelState::Loading, LoadMode::Hot) => Health::NotReady("loading".into()),
            (EngineModelState::Failed(e), _) => Health::Unhealthy(e),
            _ => Health::Healthy,
        }
    }

    async fn models(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.engine().and_then(|e| e.model_info()).map(|i| vec![i.name]).unwrap_or_default())
    }

    fn parallel_slots(&self) -> Option<usize> {
        self.engine().and_then(|e| e.model_info()).map(|i| i.parallel)
    }

    fn model_state(&self) -> Option<ModelState> {
        Some(match self.model.state() {
            EngineModelState::Ready => ModelState::Loaded,
            EngineModelState::Loading => ModelState::Loading,
            EngineModelState::Unloaded | EngineModelState::Failed(_) => ModelState::Unloaded,
        })
    }

    /// Gauges of the running engine (zero while unloaded); counters summed over every load of
    /// the model, so they never go backwards.
    fn stats(&self) -> Option<BackendStats> {
        let (model_loads_total, model_unloads_total) = self.model.load_counts();
        let t = self.model.totals();
        let counters = BackendStats {
            model_loads_total,
            model_unloads_total,
            prompt_tokens_total: t.prompt_tokens,
            completion_tokens_total: t.completion_tokens,
            cached_tokens_total: t.cached_tokens,
            requests_total: t.requests,
            ..BackendStats::default()
        };
        let Some(engine) = self.engine() else { return Some(counters) };
        let s = engine.stats();
        Some(BackendStats {
            model_loaded: engine.status() == EngineStatus::Ready,
            slots_total: s.slots_total as u64,
            slots_busy: s.slots_busy as u64,
            queue_depth: s.queue_depth as u64,
            kv_cells_used: s.kv_cells_used,
            kv_cells_total: s.kv_cells_total,
            memory_bytes: s.memory_bytes,
            ..counters
        })
    }
}
