//! The engine-load scrape behind `routing = "prefix"`: every `routing.scrape_interval_ms`, read
//! the load of each backend that a prefix-routed deployment uses (`ferrogate_backends::load`)
//! and store it in those targets' `LoadCell`s, where the scorer reads it.
//!
//! The loop walks the registry in force each time, so deployments a reload rebuilt are fed too;
//! the probes are built for the backends configured at start (a backend a reload adds is scored
//! on the gateway's in-flight count until the next restart). It stops when draining starts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ferrogate_backends::load::{Probe, Scraper, probe_for};
use ferrogate_core::Deployment;
use ferrogate_core::affinity::{EngineLoad, RoutingMode};
use ferrogate_server::Running;

use crate::config::Config;

/// Starts the loop when some deployment routes by prefix.
pub fn spawn(cfg: &Config, running: &Running) {
    if !cfg.deployments.values().any(|d| d.routing == RoutingMode::Prefix) {
        return;
    }
    let probes: HashMap<String, Probe> = running
        .state
        .backends
        .iter()
        .filter_map(|b| Some((b.name().to_owned(), probe_for(cfg.backends.get(b.name())?, b)?)))
        .collect();
    let interval = Duration::from_millis(cfg.resilience.routing.scrape_interval_ms);
    let scraper = match Scraper::new(interval.clamp(Duration::from_millis(100), Duration::from_secs(1))) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "engine-load scrape not started; prefix routing uses in-flight counts");
            return;
        }
    };
    let (live, stop) = (running.live.clone(), running.state.stopping.clone());
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
            scrape_once(&scraper, &probes, &deployments, &mut failing).await;
        }
    });
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
