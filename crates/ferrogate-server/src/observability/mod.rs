//! Observability: Prometheus metrics (`metrics`), OpenTelemetry traces (`trace`), the live
//! dashboard's recent-request feed (`feed`); the dashboard's page and event stream are served by
//! `handlers::dashboard`, and `sampler` pushes the gauges in.
//!
//! Per request, an [`ObsCx`] travels in `RequestCx`: the stage boundaries (auth done, routed,
//! admitted), the deployment once routed, and the trace. A request is recorded once: by
//! `Settle::drop` if it reached a backend, else by the access layer when its response leaves.
//!
//! Invariant: nothing here blocks a request or grows without bound — metrics are atomics and
//! sharded maps, the feed is a fixed-size ring, spans leave through a bounded batch queue.

pub mod config;
pub mod content;
pub mod cx;
pub mod feed;
pub mod metrics;
pub mod settle;
pub mod trace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use self::settle::SettleObs;

use self::config::ObservabilityConfig;
use self::cx::ObsCx;
use self::feed::{Entry, Feed};
use self::metrics::{Metrics, RequestSample};
use self::trace::{Clock, Tracing};
use crate::request::record::RequestRecord;

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
        ObsCx::new(clock, trace)
    }

    /// The metrics and the dashboard feed entry of one finished inference request.
    pub fn record(&self, r: &RequestRecord<'_>) {
        let sample = RequestSample::of(r);
        if self.cfg.metrics.enabled {
            self.metrics.request(&sample);
        }
        if !self.cfg.dashboard.enabled {
            return;
        }
        self.feed.push(Entry {
            at_ms: feed::now_ms(),
            request_id: r.request_id.to_owned(),
            endpoint: sample.endpoint,
            deployment: self.feed.intern(r.deployment),
            backend: r.backend.map(|b| self.feed.intern(b)),
            status: r.status,
            error_type: sample.error_type,
            latency_ms: r.duration.as_secs_f64() * 1000.0,
            ttft_ms: r.ttft.map(|t| t.as_secs_f64() * 1000.0),
            prompt_tokens: sample.prompt_tokens,
            completion_tokens: sample.completion_tokens,
            tenant: r.tenant.map(|t| self.feed.intern(t)),
        });
    }

    /// Completion tokens per second since the previous sample (taken at least 0.5 s before).
    pub fn engine_rate(&self, backend: &str, total: u64) -> Option<f64> {
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
