//! The engine-load scrape behind `routing = "prefix"`: every `routing.scrape_interval_ms`, read
//! the load of each backend that a prefix-routed deployment uses (`ferrogate_backends::load`)
//! and store it in those targets' `LoadCell`s, where the scorer reads it.
//!
//! The loop walks the registry in force each time, so deployments a reload rebuilt are fed too,
//! and reads the [`Probes`] of the backends in force, which a reload or a DNS discovery that
//! builds backends refreshes (`reload::Reloader`). It idles while no deployment routes by
//! prefix, and stops when draining starts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ferrogate_backends::load::{Probe, Scraper, probe_for};
use ferrogate_core::affinity::{EngineLoad, RoutingMode};
use ferrogate_core::{Backend, Deployment};
use ferrogate_server::Running;

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

/// Starts the loop; the probes it reads, for the reloader to refresh.
pub fn spawn(cfg: &Config, running: &Running) -> Probes {
    let probes = Probes::default();
    probes.refresh(cfg, &running.state.backends);
    let interval = Duration::from_millis(cfg.resilience.routing.scrape_interval_ms);
    let scraper = match Scraper::new(interval.clamp(Duration::from_millis(100), Duration::from_secs(1))) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "engine-load scrape not started; prefix routing uses in-flight counts");
            return probes;
        }
    };
    let (live, stop, shared) = (running.live.clone(), running.state.stopping.clone(), probes.clone());
    running.state.tasks.spawn(async move {
        let mut failing = HashSet::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let deployments = live.current().registry.deployments().to_vec();
            if deployments.iter().any(|d| d.router.mode == RoutingMode::Prefix) {
                scrape_once(&scraper, &shared.snapshot(), &deployments, &mut failing).await;
            }
        }
    });
    probes
}

/// One round: each (backend, model) read once, concurrently; the readings stored in every
/// prefix-routed target they belong to.
async fn scrape_once(
    scraper: &Scraper,
    probes: &HashMap<String, Probe>,
    deployments: &[Arc<Deployment>],
    failing: &mut HashSet<String>,
) {
    let prefix = || deployments.iter().filter(|d| d.router.mode == RoutingMode::Prefix).flat_map(|d| &d.targets);
    let mut wanted: Vec<(String, String)> =
        prefix().map(|t| (t.backend.name().to_owned(), t.upstream_model.clone())).collect();
    wanted.sort();
    wanted.dedup();
    let reads = wanted.iter().filter_map(|(name, model)| {
        let probe = probes.get(name)?;
        Some(async move { ((name.clone(), model.clone()), scraper.read(probe, model).await) })
    });
    let mut got: HashMap<(String, String), EngineLoad> = HashMap::new();
    for (key, res) in futures::future::join_all(reads).await {
        match res {
            Ok(load) => {
                if failing.remove(&key.0) {
                    tracing::info!(backend = %key.0, "engine load readable again");
                }
                got.insert(key, load);
            }
            Err(e) if failing.insert(key.0.clone()) => {
                tracing::warn!(backend = %key.0, error = %e, "cannot read engine load; routing uses in-flight counts")
            }
            Err(_) => {}
        }
    }
    for t in prefix() {
        if let Some(load) = got.get(&(t.backend.name().to_owned(), t.upstream_model.clone())) {
            t.load.set(*load);
        }
    }
}
