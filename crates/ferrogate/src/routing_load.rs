//! The engine-load scrape behind `routing = "prefix"`: every `routing.scrape_interval_ms`, read
//! the load of each backend that a prefix-routed deployment uses (`ferrogate_backends::load`)
//! and store it in those targets' `LoadCell`s, where the scorer reads it. At most one read per
//! engine is under way at a time: a busy engine that answers late is not asked again meanwhile.
//!
//! The loop walks the registry in force each time, so deployments a reload rebuilt are fed too,
//! and reads the [`Probes`] of the backends in force, which a reload or a DNS discovery that
//! builds backends refreshes (`reload::Reloader`). It idles while no deployment routes by
//! prefix, and stops when draining starts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ferrogate_backends::load::{Probe, Scraper, probe_for};
use ferrogate_core::affinity::{EngineLoad, RoutingMode};
use ferrogate_core::{Backend, Deployment};
use ferrogate_server::Running;
use tokio::time::Instant;

use crate::config::Config;

/// Where each backend in force is scraped, by backend name.
#[derive(Clone, Default)]
pub struct Probes(Arc<RwLock<HashMap<String, Probe>>>);

impl Probes {
    /// The probes of `backends`, as `cfg` (expanded: discovered backends by their own names)
    /// configures them, in place of the ones before.
    pub fn refresh<'a>(&self, cfg: &Config, backends: impl IntoIterator<Item = &'a Arc<dyn Backend>>) {
        let next: HashMap<String, Probe> = backends
            .into_iter()
            .filter_map(|b| Some((b.name().to_owned(), probe_for(cfg.backends.get(b.name())?, b)?)))
            .collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    fn snapshot(&self) -> HashMap<String, Probe> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// How long one reading may take. Long on purpose: an engine busy with a long batch (llama-server)
/// answers `/metrics` when the batch ends, and a reading abandoned early would leave the engine's
/// handler waiting while the next tick asks again — a pile of requests holding its HTTP threads.
/// A slow reading only ages out.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// (backend, upstream model): what one reading is of.
type Key = (String, String);

/// The readings so far and the reads under way, shared by the loop and its read tasks.
#[derive(Default)]
struct Readings {
    latest: HashMap<Key, (EngineLoad, Instant)>,
    pending: HashSet<Key>,
    /// Backends whose last reading failed (logged once, and again when they recover).
    failing: HashSet<String>,
}

/// Starts the loop; the probes it reads, for the reloader to refresh.
pub fn spawn(cfg: &Config, running: &Running) -> Probes {
    let probes = Probes::default();
    probes.refresh(cfg, &running.state.backends);
    let interval = Duration::from_millis(cfg.resilience.routing.scrape_interval_ms);
    let scraper = match Scraper::new(READ_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "engine-load scrape not started; prefix routing uses in-flight counts");
            return probes;
        }
    };
    let (live, stop, shared) = (running.live.clone(), running.state.stopping.clone(), probes.clone());
    let tasks = running.state.tasks.clone();
    running.state.tasks.spawn(async move {
        let readings = Arc::new(Mutex::new(Readings::default()));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let deployments = live.current().registry.deployments().to_vec();
            if deployments.iter().any(|d| d.router.mode == RoutingMode::Prefix) {
                scrape_round(&scraper, &shared.snapshot(), &deployments, &readings, &tasks);
            }
        }
    });
    probes
}

fn lock(r: &Mutex<Readings>) -> std::sync::MutexGuard<'_, Readings> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One round: a read started for each (backend, model) with none under way — at most one
/// request per engine in flight, however slow it answers — and the latest readings stored in
/// every prefix-routed target they belong to (each with its own age, so a reading that stopped
/// coming ages out of the scorer).
fn scrape_round(
    scraper: &Scraper,
    probes: &HashMap<String, Probe>,
    deployments: &[Arc<Deployment>],
    readings: &Arc<Mutex<Readings>>,
    tasks: &tokio_util::task::TaskTracker,
) {
    let prefix = || deployments.iter().filter(|d| d.router.mode == RoutingMode::Prefix).flat_map(|d| &d.targets);
    let mut wanted: Vec<Key> = prefix().map(|t| (t.backend.name().to_owned(), t.upstream_model.clone())).collect();
    wanted.sort();
    wanted.dedup();
    // Readings of backends no longer routed to (removed by a reload or a discovery) are dropped.
    lock(readings).latest.retain(|k, _| wanted.binary_search(k).is_ok());
    for key in wanted {
        let Some(probe) = probes.get(&key.0).cloned() else { continue };
        if !lock(readings).pending.insert(key.clone()) {
            continue;
        }
        let (scraper, readings) = (scraper.clone(), Arc::clone(readings));
        tasks.spawn(async move {
            let res = scraper.read(&probe, &key.1).await;
            let mut r = lock(&readings);
            r.pending.remove(&key);
            match res {
                Ok(load) => {
                    if r.failing.remove(&key.0) {
                        tracing::info!(backend = %key.0, "engine load readable again");
                    }
                    r.latest.insert(key, (load, Instant::now()));
                }
                Err(e) => {
                    if r.failing.insert(key.0.clone()) {
                        tracing::warn!(backend = %key.0, error = %e, "cannot read engine load; routing uses in-flight counts");
                    }
                }
            }
        });
    }
    let r = lock(readings);
    for t in prefix() {
        if let Some((load, at)) = r.latest.get(&(t.backend.name().to_owned(), t.upstream_model.clone())) {
            t.load.set_at(*load, *at);
        }
    }
}
