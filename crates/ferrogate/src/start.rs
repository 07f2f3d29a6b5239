//! Starting a gateway: fetch the models, resolve the DNS-discovered backends, build the
//! services (`compose`), serve, start the engine-load scrape of prefix-routed deployments
//! (`routing_load`) and the `Reloader` that reloads the configuration file and
//! re-resolves discovered backends. Above `compose` and `reload`, which both build from a
//! configuration.

use std::future::Future;
use std::sync::Arc;

use ferrogate_core::tenancy::time::{Clock, SystemClock};
use ferrogate_server::{Running, StartError};

use crate::compose::{fetch_models, services};
use crate::config::Config;
use crate::discovery::{self, Answers, Resolver, SystemResolver};
use crate::reload::{ConfigFile, Refreshed, Reloader};

/// Builds everything from `cfg`, binds and serves until `signal` resolves, then drains.
pub async fn start(cfg: &Config, signal: impl Future<Output = ()> + Send + 'static) -> Result<Running, StartError> {
    start_with_clock(cfg, signal, Arc::new(SystemClock)).await
}

/// As [`start`], reading time for key expiry, budgets and usage rows from `clock` (tests).
pub async fn start_with_clock(
    cfg: &Config,
    signal: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> Result<Running, StartError> {
    start_with(cfg, signal, clock, None, Arc::new(SystemResolver)).await
}

/// As [`start_with_clock`], reloading from `file` when given (SIGHUP, a change of its text), and
/// resolving DNS-discovered backends through `resolver` — once before the backends are built,
/// then every `discover_interval_ms` ([`Reloader`]).
pub async fn start_with(
    cfg: &Config,
    signal: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
    file: Option<ConfigFile>,
    resolver: Arc<dyn Resolver>,
) -> Result<Running, StartError> {
    let mut cfg = cfg.clone();
    fetch_models(&mut cfg).await.map_err(StartError::Build)?;
    let answers = discovery::resolve_all(&cfg, &*resolver, &Answers::default()).await;
    let expanded = discovery::expand(&cfg, &answers);
    let (services, shared_breakers) = services(&expanded, clock).await.map_err(StartError::Build)?;
    let running = ferrogate_server::start(&expanded.settings, services, signal).await?;
    let probes = crate::routing_load::spawn(&expanded, &running);
    if file.is_some() || discovery::interval(&cfg).is_some() {
        let poll = std::time::Duration::from_millis(cfg.server.config_poll_ms);
        let reloader =
            Arc::new(Reloader::new(file, &cfg, answers, resolver, &running, Refreshed { probes, shared_breakers }));
        reloader.spawn(poll, &running.state.tasks, running.state.stopping.clone());
    }
    Ok(running)
}
