//! Prometheus metrics: every family ferrogate exports, its help text and buckets (here), and the
//! typed events and snapshots each concern records, one file per concern: `requests` (one
//! `RequestSample` per finished request, read off its `RequestRecord`), `resilience`
//! (`ResilienceEvent`s from dispatch; queue, breaker, health and in-flight snapshots), `engine`
//! (the embedded engine's `BackendStats`), `cache` (`CacheEvent`s of the response cache), `tenancy` (ledger and quota snapshots), `limits` (the
//! limiter's snapshot), `guardrails` (its `Recorder` events). The registry is a `PrometheusRecorder` owned by `AppState` (never the
//! process-global recorder), rendered as Prometheus text (0.0.4) at `/metrics`.
//!
//! Invariants:
//! - Label values come from closed sets only: deployment and backend names from the config,
//!   endpoint, status class and error codes (`&'static str`), tenant ids only when
//!   `metrics.tenant_labels = true`. Never a request id, a key or a model name a client typed
//!   (an unknown model is `deployment="unknown"`).
//! - A request is recorded once, where it ends: `Settle::drop` for requests that reached a
//!   backend, the access layer for the others.
//! - Gauges and counters that live elsewhere (engine, ledger, health, quotas) are pushed as
//!   snapshots by `sampler` (and before a scrape), never read from `AppState` here.

mod cache;
mod config;
mod engine;
mod guardrails;
mod jobs;
mod limits;
pub(crate) mod requests;
mod resilience;
mod tenancy;

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use self::cache::CacheEvent;
pub use self::requests::RequestSample;
pub use self::resilience::ResilienceEvent;

/// The label value of a model that names no deployment.
pub use super::cx::UNKNOWN;

/// Every endpoint label value.
pub const ENDPOINTS: &[&str] =
    &["chat", "completion", "generate", "stream", "messages", "ollama_chat", "ollama_generate", "responses"];
/// Rate-limit scopes (`rate_limited`): the key's and tenant's limits (issue 4, wired), and the
/// shared limits of issue 5.
pub const RATE_LIMIT_SCOPES: &[&str] = &["key", "tenant", "deployment", "ip", "global"];
/// Circuit breaker states, one-hot in `ferrogate_circuit_state`.
pub const CIRCUIT_STATES: &[&str] = &["closed", "open", "half_open"];

// === names ===

pub const REQUESTS: &str = "ferrogate_requests_total";
pub const REQUEST_DURATION: &str = "ferrogate_request_duration_seconds";
pub const TTFT: &str = "ferrogate_time_to_first_token_seconds";
pub const TPOT: &str = "ferrogate_time_per_output_token_seconds";
pub const TOKENS_PER_SECOND: &str = "ferrogate_output_tokens_per_second";
pub const TOKENS: &str = "ferrogate_tokens_total";
pub const ACTIVE_REQUESTS: &str = "ferrogate_active_requests";
pub const BUDGET_REJECTIONS: &str = "ferrogate_budget_rejections_total";
pub const BUDGET_STORE: &str = "ferrogate_budget_store_events_total";
pub const RATE_LIMITED: &str = "ferrogate_rate_limit_rejections_total";
pub const QUEUE_DEPTH: &str = "ferrogate_queue_depth";
pub const QUEUE_WAIT: &str = "ferrogate_queue_wait_seconds";
pub const QUEUE_REJECTIONS: &str = "ferrogate_queue_rejections_total";
pub const CIRCUIT_STATE: &str = "ferrogate_circuit_state";
pub const RETRIES: &str = "ferrogate_retries_total";
pub const FAILOVERS: &str = "ferrogate_failovers_total";
pub const FALLBACKS: &str = "ferrogate_fallbacks_total";
pub const LIMITER_STORE_ERRORS: &str = "ferrogate_rate_limiter_store_errors_total";
pub const BACKEND_HEALTHY: &str = "ferrogate_backend_healthy";
pub const BACKEND_INFLIGHT: &str = "ferrogate_backend_inflight_requests";
pub const BACKEND_REQUESTS: &str = "ferrogate_backend_requests_total";
pub const BACKEND_DURATION: &str = "ferrogate_backend_request_duration_seconds";
pub const ENGINE_SLOTS: &str = "ferrogate_engine_slots";
pub const ENGINE_SLOTS_IN_USE: &str = "ferrogate_engine_slots_in_use";
pub const ENGINE_QUEUE_DEPTH: &str = "ferrogate_engine_queue_depth";
pub const ENGINE_KV_USED: &str = "ferrogate_engine_kv_cache_used_cells";
pub const ENGINE_KV_TOTAL: &str = "ferrogate_engine_kv_cache_cells";
pub const ENGINE_KV_RATIO: &str = "ferrogate_engine_kv_cache_usage_ratio";
pub const ENGINE_TOKENS: &str = "ferrogate_engine_tokens_total";
pub const ENGINE_TOKENS_PER_SECOND: &str = "ferrogate_engine_tokens_per_second";
pub const ENGINE_REQUESTS: &str = "ferrogate_engine_requests_total";
pub const ENGINE_MEMORY: &str = "ferrogate_engine_memory_bytes";
pub const MODEL_LOADED: &str = "ferrogate_model_loaded";
pub const MODEL_LOADS: &str = "ferrogate_model_loads_total";
pub const MODEL_UNLOADS: &str = "ferrogate_model_unloads_total";
pub const LEDGER_ROWS: &str = "ferrogate_ledger_rows_total";
pub const LEDGER_RETRIES: &str = "ferrogate_ledger_write_retries_total";
pub const LEDGER_PENDING: &str = "ferrogate_ledger_pending_rows";
pub const LEDGER_LAG: &str = "ferrogate_ledger_write_lag_seconds";
pub const TRACING_SPANS: &str = "ferrogate_tracing_spans_total";
pub const GUARDRAIL_FINDINGS: &str = "ferrogate_guardrail_findings_total";
pub const GUARDRAIL_JUDGE: &str = "ferrogate_guardrail_judge_total";
pub const CACHE_LOOKUPS: &str = "ferrogate_cache_lookups_total";
pub const CACHE_SAVED_TOKENS: &str = "ferrogate_cache_saved_tokens_total";
pub const BUILD_INFO: &str = "ferrogate_build_info";
pub const JOBS_QUEUED: &str = "ferrogate_jobs_queued";
pub const JOBS_RUNNING: &str = "ferrogate_jobs_running";
pub const JOBS_OLDEST_AGE: &str = "ferrogate_jobs_oldest_ready_age_seconds";
pub const JOBS_DEAD: &str = "ferrogate_jobs_dead";
pub const START_TIME: &str = "ferrogate_start_time_seconds";
pub const CONFIG_RELOADS: &str = "ferrogate_config_reloads_total";
// OpenTelemetry GenAI semantic conventions, under their Prometheus names (dots → underscores,
// unit suffix), recorded alongside the ferrogate_* families.
pub const GENAI_TOKEN_USAGE: &str = "gen_ai_client_token_usage";
pub const GENAI_DURATION: &str = "gen_ai_client_operation_duration_seconds";
pub const GENAI_TTFT: &str = "gen_ai_server_time_to_first_token_seconds";
pub const GENAI_TPOT: &str = "gen_ai_server_time_per_output_token_seconds";

/// Kind, name, help text: the catalogue (also what the docs and the deploy/ test check against).
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "counter",
        REQUESTS,
        "Inference requests, by endpoint, deployment, status class and error type (none on success).",
    ),
    (
        "histogram",
        REQUEST_DURATION,
        "Inference request duration, from arrival to the last byte (streams) or the response (JSON).",
    ),
    ("histogram", TTFT, "Time from arrival to the first content event of a streamed response."),
    ("histogram", TPOT, "Inter-token latency: time per output token after the first, per streamed request."),
    ("histogram", TOKENS_PER_SECOND, "Output tokens per second of generation, per request."),
    ("counter", TOKENS, "Tokens, by deployment and type: prompt, cached (part of prompt) and completion."),
    ("gauge", ACTIVE_REQUESTS, "Inference requests and streams in flight."),
    ("counter", BUDGET_REJECTIONS, "Requests refused because a key's or tenant's budget is used up."),
    (
        "counter",
        BUDGET_STORE,
        "The shared budget store (Redis), by event: error (could not answer), failed_open (admitted without a reservation), seed (an owner seeded from the ledger), correction (a window raised to the ledger), settle_failed.",
    ),
    ("counter", RATE_LIMITED, "Requests refused by a rate or concurrency limit, by scope."),
    ("gauge", QUEUE_DEPTH, "Requests waiting in a deployment's admission queue."),
    ("histogram", QUEUE_WAIT, "Time requests waited in a deployment's admission queue."),
    ("counter", QUEUE_REJECTIONS, "Requests refused because a deployment's queue was full."),
    ("gauge", CIRCUIT_STATE, "Circuit breaker state per backend, one-hot (1 for the current state)."),
    ("counter", RETRIES, "Backend attempts retried (same backend or another), by the backend that failed."),
    ("counter", FAILOVERS, "Requests moved to another backend of their deployment before the first byte."),
    ("counter", FALLBACKS, "Requests served by a fallback deployment, by the deployment asked for."),
    ("counter", GUARDRAIL_FINDINGS, "Guardrail findings, by rule (injection.*, pii.*) and action (log, flag, block)."),
    ("counter", CONFIG_RELOADS, "Configuration reloads (SIGHUP or file change), by result (ok, error)."),
    ("counter", GUARDRAIL_JUDGE, "Guardrail judge calls, by outcome (injection, safe, unparsable, timeout, error)."),
    (
        "counter",
        CACHE_LOOKUPS,
        "Response-cache lookups of cacheable requests, by deployment and result (hit, miss, error).",
    ),
    (
        "counter",
        CACHE_SAVED_TOKENS,
        "Tokens answered from the response cache instead of a backend (prompt + completion), by deployment.",
    ),
    (
        "counter",
        LIMITER_STORE_ERRORS,
        "Rate-limit store (Redis) calls that failed, by what the policy did: open (admitted) or closed (503).",
    ),
    ("gauge", BACKEND_HEALTHY, "1 if the backend's last active health check passed."),
    ("gauge", BACKEND_INFLIGHT, "Requests in flight per deployment target."),
    ("counter", BACKEND_REQUESTS, "Backend calls, by backend and outcome (ok, error, cancelled)."),
    ("histogram", BACKEND_DURATION, "Backend call duration (one attempt), by backend."),
    ("gauge", ENGINE_SLOTS, "Embedded engine sequence slots (parallel requests)."),
    ("gauge", ENGINE_SLOTS_IN_USE, "Embedded engine slots holding a running request."),
    ("gauge", ENGINE_QUEUE_DEPTH, "Requests waiting for an embedded engine slot."),
    ("gauge", ENGINE_KV_USED, "KV cache cells holding tokens (running and reusable prefixes)."),
    ("gauge", ENGINE_KV_TOTAL, "KV cache cells in the embedded engine's context."),
    ("gauge", ENGINE_KV_RATIO, "Share of the KV cache in use, 0 to 1."),
    ("counter", ENGINE_TOKENS, "Tokens processed by the embedded engine, by type (prompt, cached, completion)."),
    (
        "gauge",
        ENGINE_TOKENS_PER_SECOND,
        "Completion tokens per second generated by the embedded engine (over the last sample interval).",
    ),
    ("counter", ENGINE_REQUESTS, "Requests the embedded engine finished."),
    ("gauge", ENGINE_MEMORY, "Embedded engine memory: weights and KV cache, bytes."),
    ("gauge", MODEL_LOADED, "1 when the embedded engine's model is loaded and serving."),
    ("counter", MODEL_LOADS, "Times the embedded engine's model was loaded (at start or on demand)."),
    (
        "counter",
        MODEL_UNLOADS,
        "Times the embedded engine's model was unloaded (idle past keep_alive, or to make room).",
    ),
    (
        "counter",
        LEDGER_ROWS,
        "Usage-ledger rows by outcome: accepted, written, duplicate, dropped (queue full), lost (write failed).",
    ),
    ("counter", LEDGER_RETRIES, "Usage-ledger batch writes that failed and were retried."),
    ("gauge", LEDGER_PENDING, "Usage-ledger rows accepted and not yet written."),
    ("gauge", LEDGER_LAG, "Age of the oldest usage row the ledger writer holds unwritten (0 when none)."),
    (
        "counter",
        TRACING_SPANS,
        "Sampled trace spans: ended, and exported (accepted by the OTLP collector); the difference is queued or dropped.",
    ),
    ("gauge", BUILD_INFO, "Always 1; the labels say which build runs."),
    ("gauge", JOBS_QUEUED, "Background jobs waiting in the durable queue (ready or backing off), by kind."),
    ("gauge", JOBS_RUNNING, "Background jobs leased by a worker, by kind."),
    ("gauge", JOBS_OLDEST_AGE, "How long the oldest runnable background job has waited, seconds, by kind."),
    ("gauge", JOBS_DEAD, "Background jobs in the dead-letter queue, by kind."),
    ("gauge", START_TIME, "Unix time the gateway started, seconds."),
    (
        "histogram",
        GENAI_TOKEN_USAGE,
        "OpenTelemetry GenAI gen_ai.client.token.usage: tokens per request by gen_ai_token_type (input, output).",
    ),
    ("histogram", GENAI_DURATION, "OpenTelemetry GenAI gen_ai.client.operation.duration: request duration."),
    ("histogram", GENAI_TTFT, "OpenTelemetry GenAI gen_ai.server.time_to_first_token."),
    ("histogram", GENAI_TPOT, "OpenTelemetry GenAI gen_ai.server.time_per_output_token."),
];

const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// The GenAI conventions' advice for time to first token, used for ferrogate's own too.
const TTFT_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const TPOT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
const RATE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];
const GENAI_DURATION_BUCKETS: &[f64] =
    &[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const GENAI_TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

static META: Metadata<'static> = Metadata::new("ferrogate", metrics::Level::INFO, Some(module_path!()));

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub(super) tenant_labels: bool,
    /// Concurrency refusals already added to `RATE_LIMITED` (key, tenant).
    pub(super) seen_concurrency: [std::sync::atomic::AtomicU64; 2],
    /// Limiter refusals already added to `RATE_LIMITED`, by `limits::SCOPE_CLASSES`.
    pub(super) seen_limited: [std::sync::atomic::AtomicU64; 5],
    /// Current breaker state and queue depth, for the dashboard (written on change only).
    pub(super) circuits: Mutex<HashMap<String, &'static str>>,
    pub(super) queues: Mutex<HashMap<String, usize>>,
    /// Handles of the success path by deployment, backend and endpoint: a finished request
    /// costs a read lock, two map lookups and atomic updates, no label building.
    pub(super) ok: RwLock<requests::OkCache>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

pub(super) fn label(k: &'static str, v: &str) -> Label {
    Label::new(k, SharedString::from(v.to_owned()))
}

pub(super) fn slabel(k: &'static str, v: &'static str) -> Label {
    Label::from_static_parts(k, v)
}
impl Metrics {
    /// Builds the registry and registers every family whose label sets are known from the
    /// configuration, so they export (at zero) before the first request.
    pub fn new(tenant_labels: bool, deployments: &[(&str, Vec<&str>)], backends: &[&str]) -> Self {
        let mut b = PrometheusBuilder::new();
        let buckets: &[(&str, &[f64])] = &[
            (REQUEST_DURATION, DURATION_BUCKETS),
            (BACKEND_DURATION, DURATION_BUCKETS),
            (QUEUE_WAIT, DURATION_BUCKETS),
            (TTFT, TTFT_BUCKETS),
            (GENAI_TTFT, TTFT_BUCKETS),
            (TPOT, TPOT_BUCKETS),
            (GENAI_TPOT, TPOT_BUCKETS),
            (TOKENS_PER_SECOND, RATE_BUCKETS),
            (GENAI_DURATION, GENAI_DURATION_BUCKETS),
            (GENAI_TOKEN_USAGE, GENAI_TOKEN_BUCKETS),
        ];
        for (name, v) in buckets {
            // Buckets are non-empty constants: the builder cannot refuse them.
            b = match b.set_buckets_for_metric(Matcher::Full((*name).to_owned()), v) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, metric = name, "bucket configuration refused");
                    PrometheusBuilder::new()
                }
            };
        }
        let recorder = b.build_recorder();
        let handle = recorder.handle();
        let m = Self {
            recorder,
            handle,
            tenant_labels,
            seen_concurrency: Default::default(),
            seen_limited: Default::default(),
            circuits: Mutex::default(),
            queues: Mutex::default(),
            ok: RwLock::default(),
        };
        m.describe();
        m.preregister(deployments, backends);
        m.preregister_reloads();
        m
    }

    fn describe(&self) {
        for &(kind, name, help) in FAMILIES {
            let (key, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            match kind {
                "counter" => self.recorder.describe_counter(key, unit, help),
                "gauge" => self.recorder.describe_gauge(key, unit, help),
                _ => self.recorder.describe_histogram(key, unit, help),
            }
        }
    }

    /// Zero-valued series for label sets known from the configuration.
    pub(crate) fn preregister(&self, deployments: &[(&str, Vec<&str>)], backends: &[&str]) {
        for (d, targets) in deployments {
            for e in ENDPOINTS {
                let labels = vec![
                    slabel("endpoint", e),
                    label("deployment", d),
                    slabel("status_class", "2xx"),
                    slabel("error_type", "none"),
                ];
                self.counter(REQUESTS, labels).increment(0);
            }
            for t in ["prompt", "cached", "completion"] {
                self.counter(TOKENS, vec![label("deployment", d), slabel("token_type", t)]).increment(0);
            }
            self.queue_depth(d, 0);
            self.counter(QUEUE_REJECTIONS, vec![label("deployment", d)]).increment(0);
            self.counter(FAILOVERS, vec![label("deployment", d)]).increment(0);
            self.counter(FALLBACKS, vec![label("deployment", d)]).increment(0);
            for t in targets {
                self.gauge(BACKEND_INFLIGHT, vec![label("deployment", d), label("backend", t)]).set(0.0);
            }
        }
        for b in backends {
            self.circuit_state(b, "closed");
            self.counter(RETRIES, vec![label("backend", b)]).increment(0);
            self.gauge(BACKEND_HEALTHY, vec![label("backend", b)]).set(0.0);
        }
        for s in RATE_LIMIT_SCOPES {
            self.counter(RATE_LIMITED, vec![slabel("scope", s)]).increment(0);
        }
        for s in ["key", "tenant"] {
            self.counter(BUDGET_REJECTIONS, vec![slabel("scope", s)]).increment(0);
        }
        self.gauge(ACTIVE_REQUESTS, vec![]).set(0.0);
        let build = vec![slabel("version", env!("CARGO_PKG_VERSION"))];
        self.gauge(BUILD_INFO, build).set(1.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.gauge(START_TIME, vec![]).set(now.as_secs_f64());
    }

    pub(super) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    pub(super) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder.register_gauge(&Key::from_parts(name, labels), &META)
    }

    pub(super) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// The exposition text (Prometheus 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets; run periodically so memory stays
    /// bounded when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The tracer's span counts.
    pub fn set_spans(&self, c: &super::trace::SpanCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        for (outcome, n) in [("ended", c.ended.load(Relaxed)), ("exported", c.exported.load(Relaxed))] {
            self.counter(TRACING_SPANS, vec![slabel("outcome", outcome)]).absolute(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(status: u16, error_type: &'static str) -> RequestSample<'static> {
        RequestSample {
            endpoint: "chat",
            deployment: "m",
            backend: Some("b"),
            status,
            error_type,
            tenant: Some("t1"),
            duration: Duration::from_millis(120),
            ttft: Some(Duration::from_millis(20)),
            backend_duration: Some(Duration::from_millis(100)),
            decode: Some(Duration::from_millis(90)),
            prompt_tokens: 10,
            cached_tokens: 4,
            completion_tokens: 10,
            has_usage: true,
        }
    }

    #[test]
    fn known_label_sets_export_at_zero_and_requests_count_once() {
        let m = Metrics::new(false, &[("m", vec!["b"])], &["b"]);
        let text = m.render();
        assert!(
            text.contains(
                r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="2xx",error_type="none"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"ferrogate_circuit_state{backend="b",state="closed"} 1"#), "{text}");
        assert!(text.contains(r#"ferrogate_rate_limit_rejections_total{scope="deployment"} 0"#), "{text}");
        m.request(&record(200, "none"));
        m.request(&record(502, "backend_error"));
        let text = m.render();
        assert!(
            text.contains(
                r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="2xx",error_type="none"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="5xx",error_type="backend_error"} 1"#), "{text}");
        assert!(text.contains(r#"ferrogate_tokens_total{deployment="m",token_type="completion"} 20"#), "{text}");
        assert!(
            text.contains(r#"ferrogate_time_per_output_token_seconds_count{deployment="m",backend="b"} 2"#),
            "{text}"
        );
        assert!(!text.contains("t1"), "no tenant label unless configured: {text}");
    }

    #[test]
    fn cached_and_labelled_paths_record_the_same_series() {
        let (a, b) = (Metrics::new(false, &[], &[]), Metrics::new(false, &[], &[]));
        for _ in 0..3 {
            a.request(&record(200, "none"));
            b.request_labelled(&record(200, "none"));
        }
        let lines = |t: String| {
            let mut v: Vec<String> =
                t.lines().filter(|l| !l.starts_with("ferrogate_start_time")).map(str::to_owned).collect();
            v.sort();
            v
        };
        assert_eq!(lines(a.render()), lines(b.render()));
        let want = r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="2xx",error_type="none"} 3"#;
        assert!(a.render().contains(want));
    }

    #[test]
    fn tenant_labels_only_when_configured() {
        let m = Metrics::new(true, &[("m", vec!["b"])], &["b"]);
        m.request(&record(200, "none"));
        assert!(m.render().contains(r#"tenant="t1""#));
    }
}
