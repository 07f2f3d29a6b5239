//! The pool's shared state: every model's bookkeeping under one lock (held for bookkeeping only,
//! never across an await), and the steps `ManagedEngine` and the reaper take on it.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::budget::{self, PoolConfig};
use crate::config::EngineConfig;
use crate::engine::Engine;

/// How long an unload that makes room may take before the load goes ahead anyway.
pub(super) const UNLOAD_WAIT: Duration = Duration::from_secs(10);

pub(super) struct PoolInner {
    pub(super) limits: PoolConfig,
    pub(super) members: Mutex<Vec<Member>>,
    /// Bumped whenever room may have freed up or a model changed state: waiters look again.
    pub(super) changed: watch::Sender<u64>,
    pub(super) reaper: OnceLock<()>,
}

pub(super) struct Member {
    pub(super) cfg: EngineConfig,
    /// `None`: pinned, never unloaded.
    pub(super) keep_alive: Option<Duration>,
    /// What the model counts against `max_loaded_bytes` before it reports its own figure.
    pub(super) file_bytes: u64,
    pub(super) phase: Phase,
    pub(super) in_flight: usize,
    pub(super) last_used: Instant,
    pub(super) loads: u64,
    pub(super) unloads: u64,
    /// The counters of the engines unloaded so far (a new load starts its own from zero).
    pub(super) carried: Totals,
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
    pub(super) fn add(self, s: &crate::stats::EngineStats) -> Totals {
        Totals {
            prompt_tokens: self.prompt_tokens + s.prompt_tokens_total,
            completion_tokens: self.completion_tokens + s.completion_tokens_total,
            cached_tokens: self.cached_tokens + s.cached_tokens_total,
            requests: self.requests + s.requests_total,
        }
    }
}

pub(super) enum Phase {
    Unloaded,
    /// Room is taken and the unloads that made it are finishing; the engine starts next.
    Starting,
    /// The engine is running (its own status says whether the model has finished loading).
    Running(Engine),
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

// === impl PoolInner ===

impl PoolInner {
    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Member>> {
        // The bookkeeping stays consistent across a panic elsewhere: recover the guard.
        self.members.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A quarter of the shortest keep-alive, between 10 ms and 1 s.
    pub(super) fn reap_tick(&self) -> Duration {
        let shortest = self.lock().iter().filter_map(|m| m.keep_alive).min();
        shortest.map_or(Duration::from_secs(1), |d| (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }

    /// Takes the engines of the models idle for longer than their keep-alive.
    pub(super) fn expire(&self, now: Instant) -> Vec<Engine> {
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
    pub(super) fn step(&self, id: usize) -> Step {
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
    pub(super) fn started(&self, id: usize, engine: &Engine) {
        if let Some(m) = self.lock().get_mut(id) {
            m.phase = Phase::Running(engine.clone());
            m.loads += 1;
            m.in_flight += 1;
            m.last_used = Instant::now();
        }
        self.notify();
    }

    /// A load did not start (failed, or its caller went away first): the room is free again.
    pub(super) fn abandon(&self, id: usize) {
        if let Some(m) = self.lock().get_mut(id)
            && matches!(m.phase, Phase::Starting)
        {
            m.phase = Phase::Unloaded;
        }
        self.notify();
    }

    pub(super) fn release(&self, id: usize) {
        if let Some(m) = self.lock().get_mut(id) {
            m.in_flight = m.in_flight.saturating_sub(1);
            m.last_used = Instant::now();
        }
        self.notify();
    }
}

pub(super) enum Step {
    Use(Engine),
    Load(Vec<Engine>),
    Wait(&'static str),
    Gone,
}

impl Member {
    pub(super) fn view(&self) -> budget::View {
        let running = matches!(self.phase, Phase::Running(_));
        budget::View {
            occupies: !matches!(self.phase, Phase::Unloaded),
            evictable: running && self.in_flight == 0 && self.keep_alive.is_some(),
            last_used: self.last_used,
            bytes: self.bytes(),
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        match &self.phase {
            Phase::Running(e) => Some(e.stats().memory_bytes).filter(|b| *b > 0).unwrap_or(self.file_bytes),
            Phase::Starting | Phase::Unloaded => self.file_bytes,
        }
    }

    /// Marks it unloaded and hands back its engine (to drop, or to wait for with `unload`).
    pub(super) fn unload(&mut self) -> Option<Engine> {
        let Phase::Running(engine) = std::mem::replace(&mut self.phase, Phase::Unloaded) else { return None };
        self.unloads += 1;
        self.carried = self.carried.add(&engine.stats());
        Some(engine)
    }
}
