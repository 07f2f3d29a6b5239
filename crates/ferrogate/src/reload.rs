//! Live reconfiguration, the composition root's half: on SIGHUP or when the configuration file
//! changes (read every `server.config_poll_ms` through its path, so a Kubernetes ConfigMap's
//! `..data` symlink swap is seen like an edit), read and check the file again, rebuild what
//! changed — backends whose settings changed, every deployment, keys, limits, tiers, prices,
//! guardrails — and hand it to the server ([`Live::apply`]), which swaps it in between requests.
//!
//! Invariants: an invalid file (or a backend that cannot be built) changes nothing — every
//! problem is logged and `ferrogate_config_reloads_total{result="error"}` counted; an unchanged
//! backend is the same object after a reload (its connections, breaker, engine and in-flight
//! work are untouched); settings only a restart applies (listen address, TLS, database and Redis
//! URLs, …) keep their start values and are named in the log and in `/admin/v1/config`.
//!
//! DNS-discovered backends (`discovery`) change through the same path: every
//! `discover_interval_ms` their names are resolved again, and a changed answer applies the
//! configuration in force over the new addresses ([`Reloader::rediscover`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrogate_backends::{BackendConfig, BuildContext};
use ferrogate_core::breaker::Breaker;
use ferrogate_core::{Backend, Deployment, Registry};
use ferrogate_server::LiveServices;
use ferrogate_server::live::Live;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ActiveConfig, Config, DeploymentConfig, Tree};
use crate::discovery::{self, Answers, Resolver};

/// Settings read only at start: a change to one is reported as needing a restart.
const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.tls",
    "server.header_read_timeout_secs",
    "server.idle_timeout_secs",
    "server.max_connections",
    "server.listen_backlog",
    "server.warmup",
    "server.config_poll_ms",
    "model_dir",
    "routing.scrape_interval_ms",
    "engine",
    "log",
    "tenancy",
    "limits.redis_url",
    "limits.key_prefix",
    "limits.redis_timeout_ms",
    "cache.redis_url",
    "cache.max_bytes",
    "cache.key_prefix",
    "metrics",
    "tracing",
    "dashboard",
    "conversations",
    "webhooks",
    "batches",
];

/// Where a gateway's configuration file is, for reloads (`serve --config`).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// `serve --listen`, applied again on top of every reload as at start.
    pub listen: Option<String>,
}

/// Reloads the configuration file of a running gateway, and re-resolves its DNS-discovered
/// backends.
pub struct Reloader {
    /// `None`: no file to reload (a gateway configured in code), discovery only.
    file: Option<ConfigFile>,
    live: Live,
    resolver: Arc<dyn Resolver>,
    /// The start's model pool: embedded backends a reload adds load into it, under its budget.
    engines: ferrogate_backends::ModelPool,
    /// What follows the backends in force: the engine-load probes and the shared breakers.
    refreshed: Refreshed,
    /// The start's configuration (what restart-only settings are compared against) and the
    /// backends in force; one reload at a time.
    state: tokio::sync::Mutex<InForce>,
}

/// What is kept beside the backends in force and rebuilt with them after a reload or a
/// discovery: where each is scraped for load, and (`[breaker] shared`) the breakers the fleet
/// shares.
pub struct Refreshed {
    pub probes: crate::routing_load::Probes,
    pub shared_breakers: Option<ferrogate_store::redis_breakers::BreakerSet>,
}

impl Refreshed {
    fn refresh(&self, cfg: &Config, backends: &BTreeMap<String, Built>) {
        self.probes.refresh(cfg, backends.values().map(|b| &b.backend));
        if let Some(set) = &self.shared_breakers {
            set.replace(backends.iter().map(|(n, b)| (n.clone(), Arc::clone(&b.breaker))).collect());
        }
    }
}

struct InForce {
    start: Tree,
    /// The configuration in force, as read (unchanged deployments are kept across a reload).
    tree: Tree,
    /// The same, checked, before discovered backends are expanded (what a discovery applies).
    cfg: Config,
    /// What the discovered backends resolved to last.
    answers: Answers,
    /// Backends by name, with the raw settings they were built from.
    backends: BTreeMap<String, Built>,
    /// Whether the start built a response cache (a deployment turning it on needs a restart).
    cache: bool,
}

struct Built {
    raw: Option<figment::value::Value>,
    embedded: bool,
    backend: Arc<dyn Backend>,
    breaker: Arc<Breaker>,
}

impl Reloader {
    /// For a gateway started from `cfg` (as read from `file`, when there is one), whose
    /// discovered backends resolved to `answers` through `resolver`.
    pub fn new(
        file: Option<ConfigFile>,
        cfg: &Config,
        answers: Answers,
        resolver: Arc<dyn Resolver>,
        running: &ferrogate_server::Running,
        refreshed: Refreshed,
    ) -> Reloader {
        let st = &running.state;
        let backends = st
            .backends
            .iter()
            .filter_map(|b| {
                let name = b.name().to_owned();
                let breaker = Arc::clone(st.breakers.get(&name)?);
                let configured = discovery::configured_name(&name);
                let embedded = matches!(cfg.backends.get(configured), Some(BackendConfig::Embedded(_)));
                let raw = cfg.tree.find(&format!("backends.{configured}")).cloned();
                Some((name, Built { raw, embedded, backend: Arc::clone(b), breaker }))
            })
            .collect();
        let state = InForce {
            start: cfg.tree.clone(),
            tree: cfg.tree.clone(),
            cfg: cfg.clone(),
            answers,
            backends,
            cache: st.cache.is_some(),
        };
        let (live, engines) = (running.live.clone(), cfg.engines.clone());
        Reloader { file, live, resolver, engines, refreshed, state: tokio::sync::Mutex::new(state) }
    }

    /// Reads the file again and applies it; `Err` lists every problem (all logged, counted, the
    /// configuration in force unchanged).
    pub async fn reload(&self, trigger: &'static str) -> Result<ActiveConfig, Vec<String>> {
        let mut state = self.state.lock().await;
        match self.try_reload(&mut state).await {
            Ok(active) => {
                tracing::info!(
                    trigger,
                    version = %active.version,
                    source = active.source.as_deref().unwrap_or(""),
                    "configuration reloaded"
                );
                for setting in &active.restart_required {
                    tracing::warn!(setting = %setting, "configuration change needs a restart; the start value stays in force");
                }
                Ok(active)
            }
            Err(errs) => {
                self.live.refused();
                for e in &errs {
                    tracing::error!(trigger, problem = %e, "configuration reload refused; the configuration in force stays");
                }
                Err(errs)
            }
        }
    }

    async fn try_reload(&self, state: &mut InForce) -> Result<ActiveConfig, Vec<String>> {
        let Some(file) = &self.file else { return Err(vec!["no configuration file to reload".into()]) };
        let mut cfg = config::load(Some(&file.path), file.listen.as_deref()).map_err(|e| e.0)?;
        crate::compose::fetch_models(&mut cfg).await?;
        cfg.engines = self.engines.clone();
        let mut restart = restart_required(&state.start, &cfg);
        if !state.cache && cfg.deployments.values().any(|d| d.cache) {
            restart.push("deployments.*.cache (no response cache was built at start)".to_owned());
        }
        let breakers_changed = !state.tree.same_at(&cfg.tree, "breaker");
        let mut expanded = discovery::expand(&cfg, &state.answers);
        let backends = next_backends(&state.backends, &expanded, breakers_changed, &mut restart)?;
        let live = live_services(&expanded, &backends, &state.tree, &self.live.current().registry)?;
        expanded.settings.active.origin = "reload";
        expanded.settings.active.restart_required = restart;
        let next = self.live.apply(&expanded.settings, live)?;
        self.refreshed.refresh(&expanded, &backends);
        state.backends = backends;
        state.tree = cfg.tree.clone();
        state.cfg = cfg;
        Ok(next.config.clone())
    }

    /// Resolves the discovered backends again and, when an answer changed, applies the
    /// configuration in force over the new addresses: new addresses get backends, removed ones
    /// leave the deployments (their requests in flight finish). A failed apply keeps the old
    /// answer, so the next round tries again.
    pub async fn rediscover(&self) {
        let (cfg, before) = {
            let st = self.state.lock().await;
            (st.cfg.clone(), st.answers.clone())
        };
        let answers = discovery::resolve_all(&cfg, &*self.resolver, &before).await;
        if answers == before {
            return;
        }
        let mut state = self.state.lock().await;
        let changes = answers.changes(&state.answers);
        match self.apply_answers(&mut state, answers) {
            Ok(()) => {
                for (backend, added, removed) in changes {
                    tracing::info!(backend = %backend, ?added, ?removed, "discovered backends changed");
                }
            }
            Err(errs) => {
                for e in &errs {
                    tracing::error!(problem = %e, "discovered backends changed but could not be applied");
                }
            }
        }
    }

    fn apply_answers(&self, state: &mut InForce, answers: Answers) -> Result<(), Vec<String>> {
        let mut expanded = discovery::expand(&state.cfg, &answers);
        let backends = next_backends(&state.backends, &expanded, false, &mut Vec::new())?;
        let current = self.live.current();
        let live = live_services(&expanded, &backends, &state.tree, &current.registry)?;
        expanded.settings.active = current.config.clone();
        self.live.apply(&expanded.settings, live)?;
        self.refreshed.refresh(&expanded, &backends);
        state.backends = backends;
        state.answers = answers;
        Ok(())
    }

    /// Reloads on SIGHUP and whenever the file's content changes (read every `poll`; zero: SIGHUP
    /// only), until `stop`.
    /// The SIGHUP handler is installed before this returns (a SIGHUP without one ends the
    /// process).
    /// Re-resolves discovered backends (every `discover_interval_ms`), in any case.
    pub fn spawn(self: Arc<Self>, poll: Duration, tasks: &tokio_util::task::TaskTracker, stop: CancellationToken) {
        tasks.spawn(Arc::clone(&self).discover(stop.clone()));
        if self.file.is_none() {
            return;
        }
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hup) => {
                tasks.spawn(Arc::clone(&self).on_sighup(hup, stop.clone()));
            }
            Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP: reload by file change only"),
        }
        if !poll.is_zero() {
            tasks.spawn(self.watch(poll, stop));
        }
    }

    /// Resolves the discovered backends every shortest `discover_interval_ms` of the
    /// configuration in force (checking once a second for a reload that adds one), until `stop`.
    async fn discover(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let every = discovery::interval(&self.state.lock().await.cfg);
            let pause = every.unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            if every.is_some() {
                self.rediscover().await;
            }
        }
    }

    #[cfg(unix)]
    async fn on_sighup(self: Arc<Self>, mut hup: tokio::signal::unix::Signal, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP received: reloading the configuration");
                    let _ = self.reload("sighup").await;
                }
            }
        }
    }

    /// Reads the file every `poll` and reloads when its text differs from the last text seen
    /// (a refused text is not retried until it changes again). Reading through the path follows
    /// symlinks, so an atomic rename or a ConfigMap's `..data` swap is a change like any other; a
    /// file briefly missing mid-swap is simply read again next time.
    async fn watch(self: Arc<Self>, poll: Duration, stop: CancellationToken) {
        let Some(path) = self.file.as_ref().map(|f| f.path.clone()) else { return };
        let mut seen = read_version(&path).await;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(now) = read_version(&path).await else { continue };
            if seen.as_ref() != Some(&now) {
                seen = Some(now);
                tracing::info!(path = %path.display(), "configuration file changed: reloading");
                let _ = self.reload("file").await;
            }
        }
    }
}

/// The version of the file's text now; `None` while it cannot be read (mid-swap, removed).
async fn read_version(path: &std::path::Path) -> Option<String> {
    let path = path.to_owned();
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await.ok()?.ok()?;
    Some(config::version_of(&text))
}

/// The restart-only settings whose value differs from the start's.
fn restart_required(start: &Tree, next: &Config) -> Vec<String> {
    RESTART_ONLY.iter().filter(|p| !start.same_at(&next.tree, p)).map(|p| (*p).to_owned()).collect()
}

/// The backends of `cfg`: the same object where its settings did not change (and for an
/// embedded engine whose settings changed — loading a second copy of a model next to the first
/// needs a restart), a new one with a fresh breaker otherwise. A changed `[breaker]` section
/// gives every backend a fresh breaker.
fn next_backends(
    now: &BTreeMap<String, Built>,
    cfg: &Config,
    breakers_changed: bool,
    restart: &mut Vec<String>,
) -> Result<BTreeMap<String, Built>, Vec<String>> {
    let cx = BuildContext { model_dir: cfg.model_dir.clone(), engines: cfg.engines.clone() };
    let created = tokio::time::Instant::now();
    let mut errs = Vec::new();
    let mut out = BTreeMap::new();
    for (name, bc) in &cfg.backends {
        let raw = cfg.tree.find(&format!("backends.{}", discovery::configured_name(name))).cloned();
        let embedded = matches!(bc, BackendConfig::Embedded(_));
        if let Some(b) = now.get(name).filter(|b| b.raw == raw || (b.embedded && embedded)) {
            if b.raw != raw {
                restart.push(format!("backends.{name}"));
            }
            let breaker = match breakers_changed {
                true => Arc::new(Breaker::new(cfg.resilience.breaker.to_core(), created)),
                false => Arc::clone(&b.breaker),
            };
            let kept = Built { raw: b.raw.clone(), embedded, backend: Arc::clone(&b.backend), breaker };
            out.insert(name.clone(), kept);
            continue;
        }
        match ferrogate_backends::build(name, bc.clone(), &cx) {
            Ok(backend) => {
                let breaker = Arc::new(Breaker::new(cfg.resilience.breaker.to_core(), created));
                out.insert(name.clone(), Built { raw, embedded, backend, breaker });
            }
            Err(e) => errs.push(format!("backends.{name}: {e}")),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// The registry of `cfg`'s deployments over `backends`. A deployment whose settings (and the
/// `[queue]`, `[retry]` and `[breaker]` defaults) did not change since `was`, over the same
/// backend objects, is the same `Arc` as in `registry`: its admission queue, in-flight counts and
/// retry budget carry on, so a reload never lets more requests at a backend than its slots.
fn live_services(
    cfg: &Config,
    backends: &BTreeMap<String, Built>,
    was: &Tree,
    registry: &Registry,
) -> Result<LiveServices, Vec<String>> {
    let by_name: HashMap<String, Arc<dyn Backend>> =
        backends.iter().map(|(n, b)| (n.clone(), Arc::clone(&b.backend))).collect();
    let breakers: HashMap<String, Arc<Breaker>> =
        backends.iter().map(|(n, b)| (n.clone(), Arc::clone(&b.breaker))).collect();
    let defaults_same = ["queue", "retry", "breaker", "routing"].iter().all(|p| was.same_at(&cfg.tree, p));
    let created = ferrogate_protocol::openai::unix_now();
    let deployments = cfg
        .deployments
        .iter()
        .map(|(name, d)| {
            let same = defaults_same && was.same_at(&cfg.tree, &format!("deployments.{name}"));
            let kept = registry.resolve(name).filter(|old| same && old.name == *name && same_targets(old, d, &by_name));
            match kept {
                Some(old) => Arc::clone(old),
                None => Arc::new(crate::compose::deployment(cfg, name, d, &by_name, &breakers, created)),
            }
        })
        .collect();
    let registry = Registry::shared(deployments)?;
    Ok(LiveServices { registry, backends: by_name.into_values().collect(), breakers })
}

/// Whether `old`'s targets are exactly `d`'s backends, as the same objects.
fn same_targets(old: &Deployment, d: &DeploymentConfig, backends: &HashMap<String, Arc<dyn Backend>>) -> bool {
    old.targets.len() == d.backends.len()
        && old.targets.iter().zip(&d.backends).all(|(t, name)| {
            backends.get(name).is_some_and(|b| std::ptr::addr_eq(Arc::as_ptr(b), Arc::as_ptr(&t.backend)))
        })
}
