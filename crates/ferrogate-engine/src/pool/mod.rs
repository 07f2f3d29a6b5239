//! Hot and cold models: a `ModelPool` knows every embedded model of the process and which of
//! them are loaded. A `hot` model loads at start; an `on_demand` one loads when a request first
//! needs it ([`ManagedEngine::acquire`], bounded by `load_timeout_ms`); a model idle for its
//! `keep_alive` is unloaded by the pool's reaper; `[engine]`'s budget ([`PoolConfig`]) bounds
//! how many are loaded at once, unloading the least recently used idle model to make room.
//!
//! Invariants: a model with a request in flight (a live [`ModelLease`]) is never unloaded — a
//! request that needs room waits for one to finish instead; a pinned model (`keep_alive` never:
//! a `hot` model by default) is never unloaded; the room a load needs is taken before the load
//! starts (one load per model at a time, and the unloads it caused finish first); nothing here
//! blocks async code — the one lock is held for bookkeeping only.

mod budget;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use budget::PoolConfig;

use crate::config::{EngineConfig, LoadMode, find_model};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::stats::EngineStatus;

/// How long an unload that makes room may take before the load goes ahead anyway.
const UNLOAD_WAIT: Duration = Duration::from_secs(10);

/// Every embedded model of the process and the budget they share. Clones share one pool.
#[derive(Clone, Default)]
pub struct ModelPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    limits: PoolConfig,
    members: Mutex<Vec<Member>>,
    /// Bumped whenever room may have freed up or a model changed state: waiters look again.
    changed: watch::Sender<u64>,
    reaper: OnceLock<()>,
}

struct Member {
    cfg: EngineConfig,
    /// `None`: pinned, never unloaded.
    keep_alive: Option<Duration>,
    /// What the model counts against `max_loaded_bytes` before it reports its own figure.
    file_bytes: u64,
    phase: Phase,
    in_flight: usize,
    last_used: Instant,
    loads: u64,
    unloads: u64,
    /// The counters of the engines unloaded so far (a new load starts its own from zero).
    carried: Totals,
}

/// Counters of a model summed over its loads, so they never go backwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub requests: u64,
}

impl Totals {
    fn add(self, s: &crate::stats::EngineStats) -> Totals {
        Totals {
            prompt_tokens: self.prompt_tokens + s.prompt_tokens_total,
            completion_tokens: self.completion_tokens + s.completion_tokens_total,
            cached_tokens: self.cached_tokens + s.cached_tokens_total,
            requests: self.requests + s.requests_total,
        }
    }
}

enum Phase {
    Unloaded,
    /// Room is taken and the unloads that made it are finishing; the engine starts next.
    Starting,
    /// The engine is running (its own status says whether the model has finished loading).
    Running(Engine),
}

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

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPool").field("limits", &self.inner.limits).finish()
    }
}

impl Default for PoolInner {
    fn default() -> Self {
        PoolInner {
            limits: PoolConfig::default(),
            members: Mutex::new(Vec::new()),
            changed: watch::Sender::new(0),
            reaper: OnceLock::new(),
        }
    }
}

// === impl ModelPool ===

impl ModelPool {
    pub fn new(limits: PoolConfig) -> ModelPool {
        ModelPool { inner: Arc::new(PoolInner { limits, ..PoolInner::default() }) }
    }

    /// Adds a model: a `hot` one starts loading now, an `on_demand` one waits for its first
    /// request. Fails only for an invalid config.
    pub fn register(&self, cfg: EngineConfig) -> Result<ManagedEngine, EngineError> {
        crate::config::resolve(cfg.clone())?;
        let phase = match cfg.load {
            LoadMode::Hot => Phase::Running(Engine::start(cfg.clone())?),
            LoadMode::OnDemand => Phase::Unloaded,
        };
        let member = Member {
            file_bytes: std::fs::metadata(find_model(&cfg.model_path)).map_or(0, |m| m.len()),
            keep_alive: cfg.idle_limit(),
            loads: u64::from(matches!(phase, Phase::Running(_))),
            unloads: 0,
            carried: Totals::default(),
            phase,
            in_flight: 0,
            last_used: Instant::now(),
            cfg,
        };
        let id = {
            let mut members = self.inner.lock();
            members.push(member);
            members.len() - 1
        };
        self.start_reaper();
        Ok(ManagedEngine { pool: Arc::clone(&self.inner), id })
    }

    /// The keep-alive reaper: one task per pool, on the runtime `register` ran on (none outside
    /// one: models then stay loaded), ending with the pool.
    fn start_reaper(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if self.inner.reaper.set(()).is_err() {
            return;
        }
        let pool = Arc::downgrade(&self.inner);
        rt.spawn(reap(pool));
    }
}

async fn reap(pool: Weak<PoolInner>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        let tick = p.reap_tick();
        let expired = p.expire(Instant::now());
        if !expired.is_empty() {
            p.notify();
        }
        drop(p);
        for engine in expired {
            let _ = tokio::time::timeout(UNLOAD_WAIT, engine.unload()).await;
        }
        tokio::time::sleep(tick).await;
    }
}

// === impl PoolInner ===

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, Vec<Member>> {
        // The bookkeeping stays consistent across a panic elsewhere: recover the guard.
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A quarter of the shortest keep-alive, between 10 ms and 1 s.
    fn reap_tick(&self) -> Duration {
        let shortest = self.lock().iter().filter_map(|m| m.keep_alive).min();
        shortest.map_or(Duration::from_secs(1), |d| (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }

    /// Takes the engines of the models idle for longer than their keep-alive.
    fn expire(&self, now: Instant) -> Vec<Engine> {
        let mut members = self.lock();
        members
            .iter_mut()
            .filter(|m| m.in_flight == 0 && m.keep_alive.is_some_and(|k| now.duration_since(m.last_used) >= k))
            .filter_map(|m| {
                let engine = m.unload()?;
                tracing::info!(model = %m.cfg.model_path.display(), "model unloaded after its keep_alive");
                Some(engine)
            })
            .collect()
    }

    /// One look at model `id`: use it, load it (after unloading the engines returned), or wait.
    fn step(&self, id: usize) -> Step {
        let mut members = self.lock();
        let now = Instant::now();
        let Some(m) = members.get_mut(id) else { return Step::Gone };
        match &m.phase {
            Phase::Running(engine) => {
                let engine = engine.clone();
                m.in_flight += 1;
                m.last_used = now;
                return Step::Use(engine);
            }
            Phase::Starting => return Step::Wait("another request is loading it"),
            Phase::Unloaded => {}
        }
        let views: Vec<budget::View> = members.iter().map(Member::view).collect();
        let Some(victims) = budget::make_room(&self.limits, &views, id) else {
            return Step::Wait("the loaded models are all in use");
        };
        let engines = victims.into_iter().filter_map(|v| members.get_mut(v)?.unload()).collect();
        if let Some(m) = members.get_mut(id) {
            m.phase = Phase::Starting;
        }
        Step::Load(engines)
    }

    /// Model `id`'s engine started: it runs, with the caller's request counted in flight.
    fn started(&self, id: usize, engine: &Engine) {
        if let Some(m) = self.lock().get_mut(id) {
            m.phase = Phase::Running(engine.clone());
            m.loads += 1;
            m.in_flight += 1;
            m.last_used = Instant::now();
        }
        self.notify();
    }

    /// A load did not start (failed, or its caller went away first): the room is free again.
    fn abandon(&self, id: usize) {
        if let Some(m) = self.lock().get_mut(id)
            && matches!(m.phase, Phase::Starting)
        {
            m.phase = Phase::Unloaded;
        }
        self.notify();
    }

    fn release(&self, id: usize) {
        if let Some(m) = self.lock().get_mut(id) {
            m.in_flight = m.in_flight.saturating_sub(1);
            m.last_used = Instant::now();
        }
        self.notify();
    }
}

enum Step {
    Use(Engine),
    Load(Vec<Engine>),
    Wait(&'static str),
    Gone,
}

impl Member {
    fn view(&self) -> budget::View {
        let running = matches!(self.phase, Phase::Running(_));
        budget::View {
            occupies: !matches!(self.phase, Phase::Unloaded),
            evictable: running && self.in_flight == 0 && self.keep_alive.is_some(),
            last_used: self.last_used,
            bytes: self.bytes(),
        }
    }

    fn bytes(&self) -> u64 {
        match &self.phase {
            Phase::Running(e) => Some(e.stats().memory_bytes).filter(|b| *b > 0).unwrap_or(self.file_bytes),
            Phase::Starting | Phase::Unloaded => self.file_bytes,
        }
    }

    /// Marks it unloaded and hands back its engine (to drop, or to wait for with `unload`).
    fn unload(&mut self) -> Option<Engine> {
        let Phase::Running(engine) = std::mem::replace(&mut self.phase, Phase::Unloaded) else { return None };
        self.unloads += 1;
        self.carried = self.carried.add(&engine.stats());
        Some(engine)
    }
}

/// One model of a pool: what an embedded backend holds. Dropping it unloads the model.
pub struct ManagedEngine {
    pool: Arc<PoolInner>,
    id: usize,
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
