//! `AppState`: everything a request needs, shared by `Arc` — the services the composition root
//! handed in ([`Services`]: registry, backends, breakers, stores), the settings a request reads
//! ([`RequestSettings`]), and the process's run-time state (health, in-flight count, draining).
//!
//! Live reconfiguration: an `AppState` is a snapshot. A reload builds the next one from the one
//! in force ([`AppState::reconfigured`]: new deployments, backends, keys, limits, tiers,
//! guardrails and settings over the same stores, limiter counters, metrics and run-time state)
//! and `live` serves it to every request that starts from then on; a request keeps the snapshot
//! it started with to its end. Background loops read [`AppState::current`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ferrogate_core::breaker::Breaker;
use ferrogate_core::cache::{CachePolicy, ResponseCache, SemanticIndex, SemanticPolicy};
use ferrogate_core::conversations::{ConversationStore, Retention};
use ferrogate_core::limits::LimitStore;
use ferrogate_core::tenancy::time::Clock;
use ferrogate_core::{Backend, Health, Registry};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::keys::StaticKeys;
use crate::limits::Limiter;
use crate::observability::Observability;
use crate::resilience::tiers::TierRouter;
use crate::settings::{ActiveConfig, Settings};
use crate::tenancy::Tenancy;

/// What the composition root (the binary) builds and hands the server: the backends and the
/// deployments over them, the stores behind core's traits, and the clock.
pub struct Services {
    /// Deployments by name and alias, their targets over `backends`.
    pub registry: Registry,
    /// Every configured backend (deployments may share one).
    pub backends: Vec<Arc<dyn Backend>>,
    /// One circuit breaker per backend, by backend name.
    pub breakers: HashMap<String, Arc<Breaker>>,
    /// Stored keys, the usage ledger and quotas; `None` when tenancy is off.
    pub tenancy: Option<Arc<Tenancy>>,
    /// The rate-limit counters: in process, or shared (Redis).
    pub limit_store: Arc<dyn LimitStore>,
    /// The response cache, when a deployment opts in.
    pub cache: Option<Arc<dyn ResponseCache>>,
    /// The semantic cache's index, when a deployment opts in (in process, or pgvector).
    pub semantic: Option<Arc<dyn SemanticIndex>>,
    /// Time for key expiry, budgets, limits and usage rows (tests move it).
    pub clock: Arc<dyn Clock>,
    /// The durable queue, Files + Batches and webhooks; `None`: no background work.
    pub jobs: Option<crate::jobs::services::JobServices>,
    /// Conversations and stored responses (the Responses and Conversations APIs); `None`: those
    /// endpoints are off (see `settings::conversations`).
    pub conversations: Option<Arc<dyn ConversationStore>>,
}

/// What a configuration reload replaces of the [`Services`]: the deployments and the backends
/// and breakers under them (the composition root reuses the unchanged ones).
pub struct LiveServices {
    pub registry: Registry,
    pub backends: Vec<Arc<dyn Backend>>,
    pub breakers: HashMap<String, Arc<Breaker>>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The settings a request reads, fixed at start: bounds of its input, timeouts, framing.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    /// Slots assumed for backends that do not report theirs (`queue.backend_concurrency`).
    pub backend_concurrency: usize,
    pub body_limit: usize,
    /// `server.body_read_timeout_secs`: the whole body within this long of the head, else 408.
    pub body_read_timeout: Duration,
    /// `server.backend_header`: whether responses name their backend in `x-ferrogate-backend`.
    pub backend_header: bool,
    /// Bounds on a request's messages (`server.max_messages`, `server.max_message_bytes`).
    pub shape: ferrogate_protocol::openai::shape::ShapeLimits,
    pub request_timeout: Duration,
    pub keepalive: Duration,
    /// `server.client_write_timeout_secs`: a stream whose client takes nothing this long is cut.
    pub client_write_timeout: Duration,
    pub shutdown_grace: Duration,
    pub health_interval: Duration,
}

pub struct Inner {
    pub registry: Registry,
    /// Every configured backend, by name (deployments may share one).
    pub backends: Vec<Arc<dyn Backend>>,
    /// One circuit breaker per backend, by backend name (shared by the deployments using it).
    pub breakers: HashMap<String, Arc<Breaker>>,
    /// The virtual tiered model (`tiers.model`); `None` when tiered routing is off.
    pub tiers: Option<TierRouter>,
    pub keys: StaticKeys,
    /// Stored keys, admin API, usage ledger and quotas; `None` when tenancy is off.
    pub tenancy: Option<Arc<Tenancy>>,
    /// Rate limits (rules and the keys' rates), in process or on Redis.
    pub limits: Arc<Limiter>,
    /// The settings a request reads (limits, timeouts, framing).
    pub settings: RequestSettings,
    /// The configuration this snapshot was built from (`/admin/v1/config`).
    pub config: ActiveConfig,
    /// What every snapshot shares: draining, in-flight count, health, the snapshot in force.
    run: Arc<Runtime>,
    /// Background work (health checks, warm-up) that shutdown waits for.
    pub tasks: TaskTracker,
    /// Cancelled when draining starts: background loops stop at once.
    pub stopping: CancellationToken,
    /// Metrics, traces and the dashboard feed.
    pub obs: Arc<Observability>,
    /// Prompt-injection and PII checks; `None` when no policy turns any on.
    pub guardrails: Option<crate::guardrails::Guardrails>,
    /// The response cache (`None`: no deployment caches) and each deployment's policy.
    pub cache: Option<Arc<dyn ResponseCache>>,
    cache_policies: HashMap<String, CachePolicy>,
    /// The semantic cache's index (`None`: no deployment opts in) and each deployment's policy.
    pub semantic: Option<Arc<dyn SemanticIndex>>,
    semantic_policies: HashMap<String, SemanticPolicy>,
    /// Files + Batches, the DLQ and webhooks (`None`: off, tenancy is off).
    pub jobs: Option<Arc<crate::jobs::services::Jobs>>,
    /// The Responses and Conversations APIs' store and settings; `None`: those endpoints are off.
    pub conversations: Option<ConvService>,
}

/// The process's run-time state, shared by every snapshot.
struct Runtime {
    /// Set on SIGTERM/SIGINT: `/ready` turns 503 and new requests get 503 `shutting_down`.
    draining: AtomicBool,
    /// `server.warmup` is on and its requests have not all finished: `/ready` answers 503.
    warming: AtomicBool,
    /// Requests (and streams) not yet finished; shutdown waits for zero.
    inflight: AtomicUsize,
    /// Streamed responses open now, watched for clients that stopped reading.
    streams: Arc<crate::sse::watch::Streams>,
    /// Latest active health check result per backend name.
    health: RwLock<HashMap<String, Health>>,
    /// The snapshot in force (weak: snapshots own the runtime, not the other way round).
    current: RwLock<Weak<Inner>>,
}

/// What the Responses and Conversations handlers need.
#[derive(Clone)]
pub struct ConvService {
    pub store: Arc<dyn ConversationStore>,
    pub retention: Retention,
    pub settings: crate::settings::ConversationsSection,
    pub clock: Arc<dyn Clock>,
}

/// The semantic cache's policy of every deployment that has one.
fn semantic_policies(cfg: &Settings) -> HashMap<String, SemanticPolicy> {
    cfg.deployments.iter().filter_map(|(name, d)| d.semantic_policy(&cfg.cache).map(|p| (name.clone(), p))).collect()
}

/// Every semantic cache names an embedding deployment that exists and serves embeddings.
fn check_semantic(registry: &Registry, policies: &HashMap<String, SemanticPolicy>) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    for (name, p) in policies {
        match registry.resolve(&p.embedding) {
            None => errs.push(format!("deployments.{name}.semantic_cache: no deployment '{}'", p.embedding)),
            Some(d) if !d.capabilities().embeddings => errs.push(format!(
                "deployments.{name}.semantic_cache: deployment '{}' does not serve embeddings",
                p.embedding
            )),
            Some(_) => {}
        }
        if !(0.0..=1.0).contains(&p.threshold) {
            errs.push(format!("deployments.{name}.semantic_cache.threshold must be within 0..1"));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The state of a server over `services`, configured by `cfg`.
    pub fn new(cfg: &Settings, services: Services) -> Result<AppState, Vec<String>> {
        let Services {
            registry,
            backends,
            breakers,
            tenancy,
            limit_store,
            cache,
            semantic,
            clock,
            jobs,
            conversations,
        } = services;
        let jobs = jobs.map(|j| Arc::new(crate::jobs::services::Jobs::new(j)));
        let conversations = conversations.filter(|_| cfg.conversations.enabled).map(|store| ConvService {
            store,
            retention: cfg.conversations.retention(),
            settings: cfg.conversations.clone(),
            clock: Arc::clone(&clock),
        });
        let cache_policies =
            cfg.deployments.iter().map(|(name, d)| (name.clone(), d.cache_policy(&cfg.cache))).collect();
        let semantic_policies = semantic_policies(cfg);
        check_semantic(&registry, &semantic_policies)?;
        let limits = Arc::new(Limiter::with_store(&cfg.limits, tenancy.is_some(), limit_store, clock));
        let obs = Arc::new(observability_of(cfg, &backends)?);
        let guardrails = crate::guardrails::Guardrails::new(&cfg.guardrails).map_err(|e| vec![e])?;
        let health =
            backends.iter().map(|b| (b.name().to_owned(), Health::NotReady("not checked yet".into()))).collect();
        let run = Arc::new(Runtime {
            draining: AtomicBool::new(false),
            warming: AtomicBool::new(cfg.server.warmup),
            inflight: AtomicUsize::new(0),
            streams: Arc::default(),
            health: RwLock::new(health),
            current: RwLock::new(Weak::new()),
        });
        let st = AppState(Arc::new(Inner {
            registry,
            backends,
            breakers,
            tiers: TierRouter::new(&cfg.resilience.tiers),
            keys: StaticKeys::new(&cfg.server.api_keys),
            tenancy,
            limits,
            settings: request_settings(cfg),
            config: active(cfg),
            run,
            tasks: TaskTracker::new(),
            stopping: CancellationToken::new(),
            obs,
            guardrails,
            cache,
            cache_policies,
            semantic,
            semantic_policies,
            jobs,
            conversations,
        }));
        st.publish();
        Ok(st)
    }

    /// The next snapshot for the reloaded `cfg`: `live`'s deployments and backends, `cfg`'s
    /// static keys, rate-limit rules (over the same counters), tiers, guardrails, cache policies
    /// and request settings; stores, metrics and run-time state are this one's. Not yet in force:
    /// the caller serves it, then [`publish`](Self::publish)es it.
    pub fn reconfigured(&self, cfg: &Settings, live: LiveServices) -> Result<AppState, Vec<String>> {
        let guardrails = crate::guardrails::Guardrails::new(&cfg.guardrails).map_err(|e| vec![e])?;
        let LiveServices { registry, backends, breakers } = live;
        let semantic_policies = semantic_policies(cfg);
        check_semantic(&registry, &semantic_policies)?;
        let deployments = deployment_labels(cfg);
        let mut names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
        names.sort_unstable();
        self.obs.metrics.preregister(&deployments, &names);
        let next = AppState(Arc::new(Inner {
            registry,
            backends,
            breakers,
            tiers: TierRouter::new(&cfg.resilience.tiers),
            keys: StaticKeys::new(&cfg.server.api_keys),
            tenancy: self.tenancy.clone(),
            limits: Arc::new(self.limits.reconfigured(&cfg.limits)),
            settings: request_settings(cfg),
            config: active(cfg),
            run: Arc::clone(&self.run),
            tasks: self.tasks.clone(),
            stopping: self.stopping.clone(),
            obs: Arc::clone(&self.obs),
            guardrails,
            cache: self.cache.clone(),
            cache_policies: cfg.deployments.iter().map(|(n, d)| (n.clone(), d.cache_policy(&cfg.cache))).collect(),
            semantic: self.semantic.clone(),
            semantic_policies,
            jobs: self.jobs.clone(),
            conversations: self.conversations.clone(),
        }));
        // New targets start as healthy as their backend was last seen (a new backend's as at
        // start, until its first check).
        for b in &next.backends {
            let seen = self.run.health.read().ok().and_then(|m| m.get(b.name()).cloned());
            if let Some(h) = seen {
                next.apply_health(b.name(), &h);
            }
        }
        Ok(next)
    }

    /// The streamed responses open now (every snapshot's), for the stall watch.
    pub(crate) fn streams(&self) -> &Arc<crate::sse::watch::Streams> {
        &self.run.streams
    }

    /// Makes this snapshot the one background work ([`current`](Self::current)) reads.
    pub fn publish(&self) {
        if let Ok(mut w) = self.run.current.write() {
            *w = Arc::downgrade(&self.0);
        }
    }

    /// The snapshot in force (this one when it is, or when none was published).
    pub fn current(&self) -> AppState {
        self.run.current.read().ok().and_then(|w| w.upgrade()).map_or_else(|| self.clone(), AppState)
    }
}

/// The settings a request reads, from `cfg`.
fn request_settings(cfg: &Settings) -> RequestSettings {
    let res = &cfg.resilience;
    RequestSettings {
        backend_concurrency: res.queue.backend_concurrency,
        body_limit: cfg.server.body_limit_bytes,
        body_read_timeout: Duration::from_secs(cfg.server.body_read_timeout_secs),
        backend_header: cfg.server.backend_header,
        shape: ferrogate_protocol::openai::shape::ShapeLimits {
            max_messages: cfg.server.max_messages,
            max_message_bytes: cfg.server.max_message_bytes,
        },
        request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
        keepalive: Duration::from_secs(cfg.server.sse_keepalive_secs),
        client_write_timeout: Duration::from_secs(cfg.server.client_write_timeout_secs),
        shutdown_grace: Duration::from_secs(cfg.server.shutdown_grace_secs),
        health_interval: Duration::from_secs(cfg.server.health_check_interval_secs),
    }
}

/// What `/admin/v1/config` shows of `cfg`, stamped with the time it takes effect.
fn active(cfg: &Settings) -> ActiveConfig {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ActiveConfig { loaded_at: now, ..cfg.active.clone() }
}

impl AppState {
    /// Whether requests must present a key: static keys, a master key or a key database exist.
    pub fn auth_required(&self) -> bool {
        self.keys.enabled() || self.tenancy.is_some()
    }

    /// `max_tokens` given to requests of token-limited keys that set none.
    pub fn default_max_tokens(&self) -> u32 {
        self.tenancy.as_ref().map_or(4096, |t| t.default_max_tokens)
    }

    /// `deployment`'s response-cache policy (off when it has none).
    pub fn cache_policy(&self, deployment: &str) -> CachePolicy {
        self.cache_policies.get(deployment).copied().unwrap_or_default()
    }

    /// `deployment`'s semantic-cache policy, when it has one.
    pub fn semantic_policy(&self, deployment: &str) -> Option<&SemanticPolicy> {
        self.semantic_policies.get(deployment)
    }

    pub fn is_draining(&self) -> bool {
        self.run.draining.load(Ordering::Relaxed)
    }

    /// Whether the start-up warm-up (`server.warmup`) is still running.
    pub fn is_warming(&self) -> bool {
        self.run.warming.load(Ordering::Relaxed)
    }

    /// The warm-up has finished: `/ready` may turn 200.
    pub fn warmed(&self) {
        self.run.warming.store(false, Ordering::Relaxed);
    }

    pub fn start_draining(&self) {
        self.run.draining.store(true, Ordering::Relaxed);
        self.stopping.cancel();
    }

    pub fn inflight(&self) -> usize {
        self.run.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard drops (the end of a stream's body).
    pub fn track(&self) -> InflightGuard {
        self.run.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Records a health check's result and applies it to the targets of the snapshot in force.
    pub fn set_health(&self, backend: &str, h: Health) {
        self.current().apply_health(backend, &h);
        if let Ok(mut map) = self.run.health.write() {
            map.insert(backend.to_owned(), h);
        }
    }

    fn apply_health(&self, backend: &str, h: &Health) {
        let healthy = h.is_healthy();
        for d in self.registry.deployments() {
            for t in d.targets.iter().filter(|t| t.backend.name() == backend) {
                t.set_healthy(healthy);
            }
            // An engine knows its slot count once its model is loaded.
            if healthy && d.targets.iter().any(|t| t.backend.name() == backend) {
                d.resize_to_slots(self.settings.backend_concurrency);
            }
        }
    }

    pub fn health_of(&self, backend: &str) -> Health {
        self.run
            .health
            .read()
            .ok()
            .and_then(|m| m.get(backend).cloned())
            .unwrap_or_else(|| Health::NotReady("not checked yet".into()))
    }
}

/// Metrics pre-registered for the configured deployments and backends, and the tracer.
fn observability_of(cfg: &Settings, backends: &[Arc<dyn Backend>]) -> Result<Observability, Vec<String>> {
    let deployments = deployment_labels(cfg);
    let mut names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    names.sort_unstable();
    Observability::new(&cfg.obs, &deployments, &names).map_err(|e| vec![e])
}

pub struct InflightGuard(AppState);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.run.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Each deployment's name and its backends' (the metrics' pre-registered label sets).
fn deployment_labels(cfg: &Settings) -> Vec<(&str, Vec<&str>)> {
    cfg.deployments.iter().map(|(n, d)| (n.as_str(), d.backends.iter().map(String::as_str).collect())).collect()
}
