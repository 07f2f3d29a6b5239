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
//!
//! Files: `state` (every model's bookkeeping under that lock, the steps taken on it), `managed`
//! (`ManagedEngine`, `ModelLease`), `budget` (the pure rule: what to unload so a load fits).

mod budget;
mod managed;
mod state;

use std::sync::{Arc, Weak};

use tokio::time::Instant;

pub use budget::PoolConfig;
pub use managed::{AcquireError, ManagedEngine, ModelLease, ModelState};
pub use state::Totals;

use crate::config::{EngineConfig, LoadMode, find_model};
use crate::engine::Engine;
use crate::error::EngineError;
use state::{Member, Phase, PoolInner, UNLOAD_WAIT};

/// Every embedded model of the process and the budget they share. Clones share one pool.
#[derive(Clone, Default)]
pub struct ModelPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPool").field("limits", &self.inner.limits).finish()
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
