//! Observability: Prometheus metrics (`metrics`), OpenTelemetry traces (`trace`), the live
//! dashboard's recent-request feed (`feed`) and its page and event stream (`dashboard`).
//!
//! Per request, an [`ObsCx`] travels in `RequestCx`: the stage boundaries (auth done, routed,
//! admitted), the deployment once routed, and the trace. A request is recorded once: by
//! `Settle::drop` if it reached a backend, else by the telemetry layer when its response leaves.
//!
//! Invariant: nothing here blocks a request or grows without bound — metrics are atomics and
//! sharded maps, the feed is a fixed-size ring, spans leave through a bounded batch queue.

pub mod config;
pub mod content;
pub mod dashboard;
pub mod feed;
pub mod metrics;
pub mod settle;
pub mod trace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

pub use self::settle::SettleObs;

use self::feed::Feed;
use self::metrics::Metrics;
use self::trace::{Clock, RequestTrace, Tracing};
use crate::config::ObservabilityConfig;
use crate::state::AppState;

/// Built once at start-up; lives in `AppState`.
pub struct Observability {
    pub metrics: Metrics,
    pub tracing: Option<Tracing>,
    pub feed: Feed,
    pub cfg: ObservabilityConfig,
    /// Last engine token count per backend, for tokens/s between samples.
    engine_samples: Mutex<HashMap<String, (Instant, u64, f64)>>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observability")
    }
}

impl Observability {
    pub fn new(
        cfg: &ObservabilityConfig,
        deployments: &[(&str, Vec<&str>)],
        backends: &[&str],
    ) -> Result<Self, String> {
        let tracing = if cfg.tracing.enabled { Some(Tracing::start(&cfg.tracing)?) } else { None };
        Ok(Self {
            metrics: Metrics::new(cfg.metrics.tenant_labels, deployments, backends),
            tracing,
            feed: Feed::new(),
            cfg: cfg.clone(),
            engine_samples: Mutex::new(HashMap::new()),
        })
    }

    /// The per-request context (and its root span when tracing is on).
    /// `traced`: start a root span (inference requests; probes and scrapes are not traced).
    pub fn request(
        &self,
        headers: &axum::http::HeaderMap,
        method: &str,
        path: &str,
        started: Instant,
        traced: bool,
    ) -> ObsCx {
        let clock = Clock { instant: started, wall: std::time::SystemTime::now() };
        let trace = self.tracing.as_ref().filter(|_| traced).map(|t| t.root(headers, method, path, clock.wall));
        ObsCx {
            clock,
            deployment: OnceLock::new(),
            tenant: OnceLock::new(),
            marks: Default::default(),
            settling: AtomicBool::new(false),
            trace,
        }
    }

    /// Reads state that lives elsewhere (health, engines, ledger, quotas) into the gauges.
    pub fn refresh(&self, st: &AppState) {
        let m = &self.metrics;
        m.set_active_requests(st.inflight());
        for b in &st.backends {
            m.set_backend_health(b.name(), st.health_of(b.name()).is_healthy());
            if let Some(s) = b.stats() {
                let rate = self.engine_rate(b.name(), s.completion_tokens_total);
                m.set_engine(b.name(), &s, rate);
            }
        }
        for d in st.registry.deployments() {
            for t in &d.targets {
                m.set_inflight(&d.name, t.backend.name(), t.inflight());
            }
            m.set_queue(&d.name, &d.queue.stats());
        }
        let now = tokio::time::Instant::now();
        for (backend, breaker) in &st.breakers {
            let state = match breaker.snapshot(now).state {
                ferrogate_core::breaker::BreakerState::Closed => "closed",
                ferrogate_core::breaker::BreakerState::Open => "open",
                ferrogate_core::breaker::BreakerState::HalfOpen => "half_open",
            };
            m.circuit_state(backend, state);
        }
        m.set_limiter(&st.limits.stats());
        if let Some(t) = &self.tracing {
            m.set_spans(t.counts());
        }
        if let Some(t) = &st.tenancy {
            m.set_ledger(&t.ledger.stats());
            m.set_refusals(&t.refusals);
        }
    }

    /// Completion tokens per second since the previous sample (taken at least 0.5 s before).
    fn engine_rate(&self, backend: &str, total: u64) -> Option<f64> {
        let mut map = self.engine_samples.lock().ok()?;
        let now = Instant::now();
        match map.get(backend).copied() {
            Some((at, _, _)) if now.duration_since(at) < Duration::from_millis(500) => None,
            Some((at, n, _)) => {
                let rate = total.saturating_sub(n) as f64 / now.duration_since(at).as_secs_f64();
                map.insert(backend.to_owned(), (now, total, rate));
                Some(rate)
            }
            None => {
                map.insert(backend.to_owned(), (now, total, 0.0));
                Some(0.0)
            }
        }
    }

    /// The embedded engine's last computed completion tokens/s.
    pub fn engine_tokens_per_sec(&self, backend: &str) -> f64 {
        self.engine_samples.lock().ok().and_then(|m| m.get(backend).map(|s| s.2)).unwrap_or(0.0)
    }

    /// Samples gauges every second (fresh tokens/s for the dashboard) and folds histogram samples.
    pub fn spawn_sampler(st: &AppState) {
        let st2 = st.clone();
        st.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = st2.stopping.cancelled() => return,
                    _ = tick.tick() => {
                        st2.obs.refresh(&st2);
                        st2.obs.metrics.upkeep();
                    }
                }
            }
        });
    }

    /// Exports the spans still queued (shutdown and tests); waits on a blocking thread.
    pub async fn flush_traces(self: &Arc<Self>) {
        self.with_tracing_blocking(|t| t.flush()).await;
    }

    pub async fn shutdown(self: &Arc<Self>) {
        self.with_tracing_blocking(|t| t.shutdown()).await;
    }

    /// Runs `f` on the tracer, if tracing is on, on a blocking thread (the exporter blocks).
    async fn with_tracing_blocking(self: &Arc<Self>, f: fn(&Tracing)) {
        if self.tracing.is_some() {
            let me = Arc::clone(self);
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(t) = &me.tracing {
                    f(t);
                }
            })
            .await;
        }
    }
}

/// Stage boundaries of one request, in `ObsCx::marks`.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    AuthDone = 0,
    Routed = 1,
    Admitted = 2,
}

/// One request's observability context (in `RequestCx`, shared by `Arc`).
pub struct ObsCx {
    pub clock: Clock,
    /// The deployment, once routing found it (metrics label; `unknown` otherwise).
    pub deployment: OnceLock<String>,
    /// The caller's tenant name (stored keys), set by the auth layer.
    tenant: OnceLock<String>,
    /// Nanoseconds after the start + 1, per [`Mark`]; 0 = not reached.
    marks: [AtomicU64; 3],
    /// Set when a `Settle` was made: it records the request, the telemetry layer must not.
    pub settling: AtomicBool,
    pub trace: Option<RequestTrace>,
}

impl std::fmt::Debug for ObsCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObsCx")
    }
}

impl ObsCx {
    pub fn mark(&self, m: Mark) {
        let ns = u64::try_from(self.clock.instant.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.marks[m as usize].store(ns, Ordering::Relaxed);
    }

    fn at(&self, m: Mark) -> Option<Instant> {
        match self.marks[m as usize].load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.clock.instant + Duration::from_nanos(ns - 1)),
        }
    }

    /// The auth layer accepted the caller: the `auth` span ends, the tenant is known.
    pub fn authenticated(&self, caller: &crate::tenancy::Caller) {
        if let Some(k) = caller.principal.key() {
            let _ = self.tenant.set(k.tenant.name.clone());
        }
        self.mark(Mark::AuthDone);
    }

    pub fn tenant(&self) -> Option<&str> {
        self.tenant.get().map(String::as_str)
    }

    /// Routing found `name`.
    pub fn routed(&self, name: &str) {
        let _ = self.deployment.set(name.to_owned());
        self.mark(Mark::Routed);
    }

    pub fn deployment(&self) -> &str {
        self.deployment.get().map_or(self::metrics::UNKNOWN, String::as_str)
    }

    pub fn sampled(&self) -> Option<&RequestTrace> {
        self.trace.as_ref().filter(|t| t.sampled)
    }

    pub fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(RequestTrace::trace_id)
    }

    /// The `auth`, `routing` and `limits` spans from the marks that were reached.
    fn stage_spans(&self, t: &RequestTrace) {
        let start = self.clock.instant;
        let auth = self.at(Mark::AuthDone);
        let routed = self.at(Mark::Routed);
        let admitted = self.at(Mark::Admitted);
        let w = |i| self.clock.wall(i);
        if let Some(a) = auth {
            t.child(None, "auth", w(start), w(a), vec![]);
        }
        if let Some(r) = routed {
            let attrs = vec![KeyValue::new("ferrogate.deployment", self.deployment().to_owned())];
            t.child(None, "routing", w(auth.unwrap_or(start)), w(r), attrs);
            if let Some(a) = admitted {
                t.child(None, "limits", w(r), w(a), vec![]);
            }
        }
    }
}

impl Drop for ObsCx {
    fn drop(&mut self) {
        if let Some(t) = &self.trace {
            if t.sampled {
                self.stage_spans(t);
            }
            t.end();
        }
    }
}
