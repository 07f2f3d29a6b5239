//! One model of a pool (`ManagedEngine`: what an embedded backend holds) and a request's hold on
//! it (`ModelLease`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::state::{Phase, PoolInner, Step, Totals, UNLOAD_WAIT};
use crate::config::{EngineConfig, LoadMode};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::stats::EngineStatus;

/// Where a model is in its life, for `/ready`, `/v1/models` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Unloaded,
    Loading,
    Ready,
    Failed(String),
}

/// Why a request could not get a loaded model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcquireError {
    /// The load, or room for it, took longer than `load_timeout_ms`.
    #[error("model '{model}' was not loaded within {}ms ({why})", waited.as_millis())]
    Timeout { model: String, waited: Duration, why: &'static str },
    #[error(transparent)]
    Load(#[from] EngineError),
}

/// One model of a pool: what an embedded backend holds. Dropping it unloads the model.
pub struct ManagedEngine {
    pub(super) pool: Arc<PoolInner>,
    pub(super) id: usize,
}

/// A request's hold on a loaded model: while it lives, the model is not unloaded. Hold it as long
/// as the request's `Generation`.
pub struct ModelLease {
    pool: Arc<PoolInner>,
    id: usize,
    engine: Engine,
}

// === impl ManagedEngine ===

impl ManagedEngine {
    /// The loaded model, loading it first if need be (and making room for it in the budget);
    /// waits at most the model's `load_timeout_ms` in all.
    pub async fn acquire(&self) -> Result<ModelLease, AcquireError> {
        let waited = Duration::from_millis(self.config().load_timeout_ms);
        let deadline = Instant::now() + waited;
        let timeout = |why: &'static str| AcquireError::Timeout { model: self.name(), waited, why };
        let engine = loop {
            let mut changed = self.pool.changed.subscribe();
            match self.pool.step(self.id) {
                Step::Use(engine) => break engine,
                Step::Load(victims) => break self.load(victims).await?,
                Step::Wait(why) => match tokio::time::timeout_at(deadline, changed.changed()).await {
                    Ok(_) => continue,
                    Err(_) => return Err(timeout(why)),
                },
                Step::Gone => return Err(AcquireError::Load(EngineError::Stopped)),
            }
        };
        let lease = ModelLease { pool: Arc::clone(&self.pool), id: self.id, engine };
        match tokio::time::timeout_at(deadline, lease.engine.wait_ready()).await {
            Ok(Ok(())) => Ok(lease),
            Ok(Err(e)) => Err(AcquireError::Load(e)),
            Err(_) => Err(timeout("the model is still loading")),
        }
    }

    /// Waits for the unloads that made room, then starts the engine (the model loads on its
    /// thread). A caller that goes away meanwhile gives the room back.
    async fn load(&self, victims: Vec<Engine>) -> Result<Engine, AcquireError> {
        struct Abandon<'a>(&'a PoolInner, usize, bool);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if self.2 {
                    self.0.abandon(self.1);
                }
            }
        }
        let mut guard = Abandon(&self.pool, self.id, true);
        for engine in victims {
            if tokio::time::timeout(UNLOAD_WAIT, engine.unload()).await.is_err() {
                tracing::warn!(model = %self.name(), "an unloaded model's engine took over 10 s to stop");
            }
        }
        let engine = Engine::start(self.config())?;
        tracing::info!(model = %self.name(), "loading model on demand");
        self.pool.started(self.id, &engine);
        guard.2 = false;
        Ok(engine)
    }

    /// The model's state now.
    pub fn state(&self) -> ModelState {
        let members = self.pool.lock();
        match members.get(self.id).map(|m| &m.phase) {
            None | Some(Phase::Unloaded) => ModelState::Unloaded,
            Some(Phase::Starting) => ModelState::Loading,
            Some(Phase::Running(e)) => match e.status() {
                EngineStatus::Loading => ModelState::Loading,
                EngineStatus::Ready => ModelState::Ready,
                EngineStatus::Failed(why) => ModelState::Failed(why),
            },
        }
    }

    /// The running engine, if the model is loaded (or loading): for its stats and model info.
    pub fn engine(&self) -> Option<Engine> {
        match self.pool.lock().get(self.id).map(|m| &m.phase) {
            Some(Phase::Running(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Loads and unloads of this model since start.
    pub fn load_counts(&self) -> (u64, u64) {
        self.pool.lock().get(self.id).map_or((0, 0), |m| (m.loads, m.unloads))
    }

    /// The model's counters summed over every load, the running engine's included.
    pub fn totals(&self) -> Totals {
        let members = self.pool.lock();
        let Some(m) = members.get(self.id) else { return Totals::default() };
        match &m.phase {
            Phase::Running(e) => m.carried.add(&e.stats()),
            Phase::Starting | Phase::Unloaded => m.carried,
        }
    }

    pub fn load_mode(&self) -> LoadMode {
        self.pool.lock().get(self.id).map_or(LoadMode::Hot, |m| m.cfg.load)
    }

    fn config(&self) -> EngineConfig {
        self.pool.lock().get(self.id).map(|m| m.cfg.clone()).unwrap_or_default()
    }

    fn name(&self) -> String {
        let path = self.config().model_path;
        path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
    }
}

impl Drop for ManagedEngine {
    fn drop(&mut self) {
        // Requests still in flight finish first: the reaper unloads it once they have.
        let engine = self.pool.lock().get_mut(self.id).and_then(|m| {
            m.keep_alive = Some(Duration::ZERO);
            if m.in_flight == 0 { m.unload() } else { None }
        });
        drop(engine);
        self.pool.notify();
    }
}

// === impl ModelLease ===

impl ModelLease {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for ModelLease {
    fn drop(&mut self) {
        self.pool.release(self.id);
    }
}

impl std::fmt::Debug for ModelLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelLease").field("engine", &self.engine).finish()
    }
}
