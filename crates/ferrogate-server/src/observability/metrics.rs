//! Prometheus metrics: every family ferrogate exports, its help text and buckets, and small typed
//! recording functions. The registry is a `PrometheusRecorder` owned by `AppState` (never the
//! process-global recorder), rendered as Prometheus text (0.0.4) at `/metrics`.
//!
//! Invariants:
//! - Label values come from closed sets only: deployment and backend names from the config,
//!   endpoint, status class and error codes (`&'static str`), tenant ids only when
//!   `metrics.tenant_labels = true`. Never a request id, a key or a model name a client typed
//!   (an unknown model is `deployment="unknown"`).
//! - A request is recorded once, where it ends: `Settle::drop` for requests that reached a
//!   backend, the telemetry layer for the others.
//! - Gauges and counters that live elsewhere (engine, ledger, health, quotas) are read when
//!   `/metrics` is scraped, not pushed from their hot paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ferrogate_core::BackendStats;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::request::record::RequestRecord;

/// The label value of a model that names no deployment.
pub use super::cx::UNKNOWN;

/// Every endpoint label value.
pub const ENDPOINTS: &[&str] = &["chat", "completion", "generate", "stream"];
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
pub const LEDGER_ROWS: &str = "ferrogate_ledger_rows_total";
pub const LEDGER_RETRIES: &str = "ferrogate_ledger_write_retries_total";
pub const LEDGER_PENDING: &str = "ferrogate_ledger_pending_rows";
pub const LEDGER_LAG: &str = "ferrogate_ledger_write_lag_seconds";
pub const TRACING_SPANS: &str = "ferrogate_tracing_spans_total";
pub const GUARDRAIL_FINDINGS: &str = "ferrogate_guardrail_findings_total";
pub const GUARDRAIL_JUDGE: &str = "ferrogate_guardrail_judge_total";
pub const BUILD_INFO: &str = "ferrogate_build_info";
pub const START_TIME: &str = "ferrogate_start_time_seconds";
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
    ("counter", RATE_LIMITED, "Requests refused by a rate or concurrency limit, by scope."),
    ("gauge", QUEUE_DEPTH, "Requests waiting in a deployment's admission queue."),
    ("histogram", QUEUE_WAIT, "Time requests waited in a deployment's admission queue."),
    ("counter", QUEUE_REJECTIONS, "Requests refused because a deployment's queue was full."),
    ("gauge", CIRCUIT_STATE, "Circuit breaker state per backend, one-hot (1 for the current state)."),
    ("counter", RETRIES, "Backend attempts retried (same backend or another), by the backend that failed."),
    ("counter", FAILOVERS, "Requests moved to another backend of their deployment before the first byte."),
    ("counter", FALLBACKS, "Requests served by a fallback deployment, by the deployment asked for."),
    ("counter", GUARDRAIL_FINDINGS, "Guardrail findings, by rule (injection.*, pii.*) and action (log, flag, block)."),
    ("counter", GUARDRAIL_JUDGE, "Guardrail judge calls, by outcome (injection, safe, unparsable, timeout, error)."),
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

/// What one finished inference request contributes (read off its `RequestRecord`). Label
/// values borrow closed sets.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample<'a> {
    pub endpoint: &'static str,
    /// The deployment's configured name, or [`UNKNOWN`].
    pub deployment: &'a str,
    /// The backend that served it, when one was called.
    pub backend: Option<&'a str>,
    /// The status the client got (200 for a stream that failed after its first byte; 499 when the
    /// client went away).
    pub status: u16,
    /// An error code of the closed set, or `"none"`.
    pub error_type: &'static str,
    /// Only used when `metrics.tenant_labels` is on.
    pub tenant: Option<&'a str>,
    pub duration: Duration,
    /// Streams: arrival → first content event.
    pub ttft: Option<Duration>,
    /// Backend call duration (from dispatch to the end).
    pub backend_duration: Option<Duration>,
    /// Generation time after the first token (streams), for inter-token latency.
    pub decode: Option<Duration>,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub completion_tokens: u32,
    /// The tokens above were counted (false for requests that never reached a backend).
    pub has_usage: bool,
}

impl<'a> RequestSample<'a> {
    pub fn of(r: &'a RequestRecord<'a>) -> Self {
        Self {
            endpoint: r.endpoint.as_str(),
            deployment: r.deployment,
            backend: r.backend,
            status: r.status,
            error_type: r.outcome.error_type(),
            tenant: r.tenant,
            duration: r.duration,
            ttft: r.ttft,
            backend_duration: r.backend_duration,
            decode: r.decode,
            prompt_tokens: r.usage.prompt_tokens,
            cached_tokens: r.usage.cached_tokens(),
            completion_tokens: r.usage.completion_tokens,
            has_usage: r.dispatched,
        }
    }
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    tenant_labels: bool,
    /// Concurrency refusals already added to `RATE_LIMITED` (key, tenant).
    seen_concurrency: [std::sync::atomic::AtomicU64; 2],
    /// Limiter refusals already added to `RATE_LIMITED`, by `limits::SCOPE_CLASSES`.
    seen_limited: [std::sync::atomic::AtomicU64; 5],
    /// Current breaker state and queue depth, for the dashboard (written on change only).
    circuits: Mutex<HashMap<String, &'static str>>,
    queues: Mutex<HashMap<String, usize>>,
    /// Handles of the success path by deployment, backend and endpoint: a finished request
    /// costs a read lock, two map lookups and atomic updates, no label building.
    ok: RwLock<OkCache>,
}

type OkCache = HashMap<String, HashMap<String, [Option<Arc<OkHandles>>; 4]>>;

/// Every series a successful request (without a tenant label) updates.
struct OkHandles {
    requests: Counter,
    duration: Histogram,
    genai_duration: Histogram,
    backend_ok: Counter,
    backend_duration: Histogram,
    ttft: Histogram,
    genai_ttft: Histogram,
    tpot: Histogram,
    genai_tpot: Histogram,
    tokens_per_second: Histogram,
    /// prompt, cached, completion.
    tokens: [Counter; 3],
    /// input, output.
    genai_tokens: [Histogram; 2],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn operation(endpoint: &str) -> &'static str {
    if endpoint == "completion" { "text_completion" } else { "chat" }
}

fn label(k: &'static str, v: &str) -> Label {
    Label::new(k, SharedString::from(v.to_owned()))
}

fn slabel(k: &'static str, v: &'static str) -> Label {
    Label::from_static_parts(k, v)
}

// === guardrails (issue 21) ===

impl crate::guardrails::Recorder for Metrics {
    fn finding(&self, rule: &'static str, action: &'static str) {
        self.counter(GUARDRAIL_FINDINGS, vec![slabel("rule", rule), slabel("action", action)]).increment(1);
    }

    fn judge(&self, outcome: &'static str) {
        self.counter(GUARDRAIL_JUDGE, vec![slabel("outcome", outcome)]).increment(1);
    }
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
    fn preregister(&self, deployments: &[(&str, Vec<&str>)], backends: &[&str]) {
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

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder.register_gauge(&Key::from_parts(name, labels), &META)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
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

    // === request path (called once per request) ===

    /// One finished inference request: counters, histograms and the GenAI equivalents.
    pub fn request(&self, r: &RequestSample<'_>) {
        let plain = r.error_type == "none" && r.status < 300 && r.has_usage && !self.tenant_labels;
        if let (true, Some(backend)) = (plain, r.backend)
            && let Some(h) = self.ok_handles(r.deployment, backend, r.endpoint)
        {
            return record_ok(&h, r);
        }
        self.request_labelled(r);
    }

    /// The cached handles of a successful request's series (built on first use).
    fn ok_handles(&self, deployment: &str, backend: &str, endpoint: &'static str) -> Option<Arc<OkHandles>> {
        let i = ENDPOINTS.iter().position(|e| *e == endpoint)?;
        let cached = self.ok.read().ok()?.get(deployment).and_then(|m| m.get(backend)).and_then(|a| a[i].clone());
        if cached.is_some() {
            return cached;
        }
        let h = Arc::new(self.build_ok(deployment, backend, endpoint));
        let mut map = self.ok.write().ok()?;
        let slot = &mut map.entry(deployment.to_owned()).or_default().entry(backend.to_owned()).or_default()[i];
        Some(Arc::clone(slot.get_or_insert(h)))
    }

    fn build_ok(&self, d: &str, b: &str, endpoint: &'static str) -> OkHandles {
        let op = operation(endpoint);
        let pair = || vec![label("deployment", d), label("backend", b)];
        let genai = || vec![slabel("gen_ai_operation_name", op), label("gen_ai_request_model", d)];
        let token = |t| vec![label("deployment", d), slabel("token_type", t)];
        let genai_token = |t| {
            vec![slabel("gen_ai_operation_name", op), label("gen_ai_request_model", d), slabel("gen_ai_token_type", t)]
        };
        let requests = vec![
            slabel("endpoint", endpoint),
            label("deployment", d),
            slabel("status_class", "2xx"),
            slabel("error_type", "none"),
        ];
        let duration = vec![slabel("endpoint", endpoint), label("deployment", d), slabel("status_class", "2xx")];
        OkHandles {
            requests: self.counter(REQUESTS, requests),
            duration: self.histogram(REQUEST_DURATION, duration),
            genai_duration: self.histogram(GENAI_DURATION, genai()),
            backend_ok: self.counter(BACKEND_REQUESTS, vec![label("backend", b), slabel("outcome", "ok")]),
            backend_duration: self.histogram(BACKEND_DURATION, vec![label("backend", b)]),
            ttft: self.histogram(TTFT, pair()),
            genai_ttft: self.histogram(GENAI_TTFT, genai()),
            tpot: self.histogram(TPOT, pair()),
            genai_tpot: self.histogram(GENAI_TPOT, genai()),
            tokens_per_second: self.histogram(TOKENS_PER_SECOND, pair()),
            tokens: [
                self.counter(TOKENS, token("prompt")),
                self.counter(TOKENS, token("cached")),
                self.counter(TOKENS, token("completion")),
            ],
            genai_tokens: [
                self.histogram(GENAI_TOKEN_USAGE, genai_token("input")),
                self.histogram(GENAI_TOKEN_USAGE, genai_token("output")),
            ],
        }
    }

    /// Any request, labels built per call (errors, cancellations, tenant labels).
    fn request_labelled(&self, r: &RequestSample<'_>) {
        let class = status_class(r.status);
        let mut labels = vec![
            slabel("endpoint", r.endpoint),
            label("deployment", r.deployment),
            slabel("status_class", class),
            slabel("error_type", r.error_type),
        ];
        let tenant = r.tenant.filter(|_| self.tenant_labels);
        if let Some(t) = tenant {
            labels.push(label("tenant", t));
        }
        self.counter(REQUESTS, labels).increment(1);
        let secs = r.duration.as_secs_f64();
        let dur_labels =
            vec![slabel("endpoint", r.endpoint), label("deployment", r.deployment), slabel("status_class", class)];
        self.histogram(REQUEST_DURATION, dur_labels).record(secs);
        let op = operation(r.endpoint);
        let mut genai = vec![slabel("gen_ai_operation_name", op), label("gen_ai_request_model", r.deployment)];
        if r.error_type != "none" {
            genai.push(slabel("error_type", r.error_type));
        }
        self.histogram(GENAI_DURATION, genai).record(secs);
        if let Some(b) = r.backend {
            self.backend_call(r, b);
        }
        if r.has_usage {
            self.tokens(r, tenant);
        }
    }

    fn backend_call(&self, r: &RequestSample<'_>, backend: &str) {
        let outcome = match r.error_type {
            "cancelled" => "cancelled",
            "none" => "ok",
            _ => "error",
        };
        self.counter(BACKEND_REQUESTS, vec![label("backend", backend), slabel("outcome", outcome)]).increment(1);
        if let Some(d) = r.backend_duration {
            self.histogram(BACKEND_DURATION, vec![label("backend", backend)]).record(d.as_secs_f64());
        }
        let pair = || vec![label("deployment", r.deployment), label("backend", backend)];
        let genai = || {
            vec![slabel("gen_ai_operation_name", operation(r.endpoint)), label("gen_ai_request_model", r.deployment)]
        };
        if let Some(t) = r.ttft {
            self.histogram(TTFT, pair()).record(t.as_secs_f64());
            self.histogram(GENAI_TTFT, genai()).record(t.as_secs_f64());
        }
        if let Some(d) = r.decode.filter(|_| r.completion_tokens > 1) {
            let per_token = d.as_secs_f64() / f64::from(r.completion_tokens - 1);
            self.histogram(TPOT, pair()).record(per_token);
            self.histogram(GENAI_TPOT, genai()).record(per_token);
        }
        let generating = r.decode.or(r.backend_duration).map(|d| d.as_secs_f64()).filter(|s| *s > 0.0);
        if let Some(s) = generating.filter(|_| r.completion_tokens > 0 && r.error_type == "none") {
            self.histogram(TOKENS_PER_SECOND, pair()).record(f64::from(r.completion_tokens) / s);
        }
    }

    fn tokens(&self, r: &RequestSample<'_>, tenant: Option<&str>) {
        for (t, n) in [("prompt", r.prompt_tokens), ("cached", r.cached_tokens), ("completion", r.completion_tokens)] {
            let mut labels = vec![label("deployment", r.deployment), slabel("token_type", t)];
            if let Some(t) = tenant {
                labels.push(label("tenant", t));
            }
            self.counter(TOKENS, labels).increment(u64::from(n));
        }
        let op = operation(r.endpoint);
        for (t, n) in [("input", r.prompt_tokens), ("output", r.completion_tokens)] {
            let labels = vec![
                slabel("gen_ai_operation_name", op),
                label("gen_ai_request_model", r.deployment),
                slabel("gen_ai_token_type", t),
            ];
            self.histogram(GENAI_TOKEN_USAGE, labels).record(f64::from(n));
        }
    }

    // === features of issue 5 (limits, queue, breaker, retries): call these where they happen ===

    /// A request refused by a rate or concurrency limit; `scope` ∈ [`RATE_LIMIT_SCOPES`].
    pub fn rate_limited(&self, scope: &'static str) {
        self.counter(RATE_LIMITED, vec![slabel("scope", scope)]).increment(1);
    }

    /// The current depth of a deployment's admission queue.
    pub fn queue_depth(&self, deployment: &str, n: usize) {
        if let Ok(mut q) = self.queues.lock() {
            q.insert(deployment.to_owned(), n);
        }
        self.gauge(QUEUE_DEPTH, vec![label("deployment", deployment)]).set(n as f64);
    }

    /// How long a request waited in a deployment's queue before it was admitted.
    pub fn queue_wait(&self, deployment: &str, waited: Duration) {
        self.histogram(QUEUE_WAIT, vec![label("deployment", deployment)]).record(waited.as_secs_f64());
    }

    /// A backend's breaker moved to `state` ∈ [`CIRCUIT_STATES`].
    pub fn circuit_state(&self, backend: &str, state: &'static str) {
        if let Ok(mut c) = self.circuits.lock() {
            c.insert(backend.to_owned(), state);
        }
        for s in CIRCUIT_STATES {
            let v = if *s == state { 1.0 } else { 0.0 };
            self.gauge(CIRCUIT_STATE, vec![label("backend", backend), slabel("state", s)]).set(v);
        }
    }

    /// An attempt on `backend` failed and the request is tried again.
    pub fn retry(&self, backend: &str) {
        self.counter(RETRIES, vec![label("backend", backend)]).increment(1);
    }

    /// A request of `deployment` moved to another of its backends.
    pub fn failover(&self, deployment: &str) {
        self.counter(FAILOVERS, vec![label("deployment", deployment)]).increment(1);
    }

    /// A request for `deployment` was served by a fallback deployment.
    pub fn fallback(&self, deployment: &str) {
        self.counter(FALLBACKS, vec![label("deployment", deployment)]).increment(1);
    }

    /// The last depth `queue_depth` reported for a deployment.
    pub fn queue_depth_of(&self, deployment: &str) -> usize {
        self.queues.lock().ok().and_then(|q| q.get(deployment).copied()).unwrap_or(0)
    }

    /// The last state `circuit_state` reported for a backend.
    pub fn circuit_of(&self, backend: &str) -> &'static str {
        self.circuits.lock().ok().and_then(|c| c.get(backend).copied()).unwrap_or("closed")
    }

    // === scraped state ===

    pub fn set_active_requests(&self, n: usize) {
        self.gauge(ACTIVE_REQUESTS, vec![]).set(n as f64);
    }

    pub fn set_backend_health(&self, backend: &str, healthy: bool) {
        self.gauge(BACKEND_HEALTHY, vec![label("backend", backend)]).set(if healthy { 1.0 } else { 0.0 });
    }

    pub fn set_inflight(&self, deployment: &str, backend: &str, n: usize) {
        self.gauge(BACKEND_INFLIGHT, vec![label("deployment", deployment), label("backend", backend)]).set(n as f64);
    }

    /// Budget and rate refusals counted by the quotas (totals since start).
    pub fn set_refusals(&self, r: &crate::tenancy::RefusalCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        for (scope, n) in [("key", &r.budget_key), ("tenant", &r.budget_tenant)] {
            self.counter(BUDGET_REJECTIONS, vec![slabel("scope", scope)]).absolute(n.load(Relaxed));
        }
        // Concurrency refusals share the rate-limit series with the limiter's refusals.
        let concurrency = [("key", &r.concurrency_key), ("tenant", &r.concurrency_tenant)];
        for ((scope, n), seen) in concurrency.into_iter().zip(&self.seen_concurrency) {
            self.add_rate_limited(scope, seen, n.load(Relaxed));
        }
    }

    /// Adds to `RATE_LIMITED{scope}` what a source's running `total` gained since `seen`: the
    /// series sums two sources (limiter and concurrency refusals), so neither can set it.
    fn add_rate_limited(&self, scope: &'static str, seen: &std::sync::atomic::AtomicU64, total: u64) {
        let prev = seen.swap(total, std::sync::atomic::Ordering::Relaxed);
        if total > prev {
            self.counter(RATE_LIMITED, vec![slabel("scope", scope)]).increment(total - prev);
        }
    }

    /// The rate limiter's refusals by scope, and its store failures (totals since start).
    pub fn set_limiter(&self, s: &crate::limits::LimiterSnapshot) {
        let by_scope = crate::limits::SCOPE_CLASSES.iter().zip(s.limited_by_scope).zip(&self.seen_limited);
        for ((scope, total), seen) in by_scope {
            self.add_rate_limited(scope, seen, total);
        }
        for (policy, n) in [("open", s.failed_open), ("closed", s.failed_closed)] {
            self.counter(LIMITER_STORE_ERRORS, vec![slabel("policy", policy)]).absolute(n);
        }
    }

    /// A deployment's admission queue: depth now, and refusals since start.
    pub fn set_queue(&self, deployment: &str, q: &ferrogate_core::queue::QueueStats) {
        self.queue_depth(deployment, q.waiting_interactive + q.waiting_batch);
        self.counter(QUEUE_REJECTIONS, vec![label("deployment", deployment)]).absolute(q.rejected_full);
    }

    /// An embedded engine's state; `per_second`: completion tokens/s since the last sample.
    pub fn set_engine(&self, backend: &str, s: &BackendStats, per_second: Option<f64>) {
        let g = |name, v: f64| self.gauge(name, vec![label("backend", backend)]).set(v);
        g(MODEL_LOADED, if s.model_loaded { 1.0 } else { 0.0 });
        g(ENGINE_SLOTS, s.slots_total as f64);
        g(ENGINE_SLOTS_IN_USE, s.slots_busy as f64);
        g(ENGINE_QUEUE_DEPTH, s.queue_depth as f64);
        g(ENGINE_KV_USED, s.kv_cells_used as f64);
        g(ENGINE_KV_TOTAL, s.kv_cells_total as f64);
        g(ENGINE_KV_RATIO, if s.kv_cells_total == 0 { 0.0 } else { s.kv_cells_used as f64 / s.kv_cells_total as f64 });
        g(ENGINE_MEMORY, s.memory_bytes as f64);
        if let Some(r) = per_second {
            g(ENGINE_TOKENS_PER_SECOND, r);
        }
        self.counter(ENGINE_REQUESTS, vec![label("backend", backend)]).absolute(s.requests_total);
        for (t, n) in [
            ("prompt", s.prompt_tokens_total),
            ("cached", s.cached_tokens_total),
            ("completion", s.completion_tokens_total),
        ] {
            self.counter(ENGINE_TOKENS, vec![label("backend", backend), slabel("token_type", t)]).absolute(n);
        }
    }

    /// The usage ledger's counters.
    pub fn set_ledger(&self, s: &ferrogate_core::tenancy::ledger::LedgerStats) {
        let rows = [
            ("accepted", s.accepted),
            ("written", s.written),
            ("duplicate", s.duplicates),
            ("dropped", s.dropped),
            ("lost", s.lost),
        ];
        for (outcome, n) in rows {
            self.counter(LEDGER_ROWS, vec![slabel("outcome", outcome)]).absolute(n);
        }
        self.counter(LEDGER_RETRIES, vec![]).absolute(s.retries);
        self.gauge(LEDGER_PENDING, vec![]).set(s.pending() as f64);
        let lag = match s.pending_since_unix_ms {
            0 => 0.0,
            since => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                (now.as_millis() as f64 - since as f64).max(0.0) / 1000.0
            }
        };
        self.gauge(LEDGER_LAG, vec![]).set(lag);
    }

    pub fn set_spans(&self, c: &super::trace::SpanCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        for (outcome, n) in [("ended", c.ended.load(Relaxed)), ("exported", c.exported.load(Relaxed))] {
            self.counter(TRACING_SPANS, vec![slabel("outcome", outcome)]).absolute(n);
        }
    }
}

/// The success path of [`Metrics::request`], on cached handles; records exactly what
/// `request_labelled` would.
fn record_ok(h: &OkHandles, r: &RequestSample<'_>) {
    let secs = r.duration.as_secs_f64();
    h.requests.increment(1);
    h.duration.record(secs);
    h.genai_duration.record(secs);
    h.backend_ok.increment(1);
    if let Some(d) = r.backend_duration {
        h.backend_duration.record(d.as_secs_f64());
    }
    if let Some(t) = r.ttft {
        h.ttft.record(t.as_secs_f64());
        h.genai_ttft.record(t.as_secs_f64());
    }
    if let Some(d) = r.decode.filter(|_| r.completion_tokens > 1) {
        let per_token = d.as_secs_f64() / f64::from(r.completion_tokens - 1);
        h.tpot.record(per_token);
        h.genai_tpot.record(per_token);
    }
    let generating = r.decode.or(r.backend_duration).map(|d| d.as_secs_f64()).filter(|s| *s > 0.0);
    if let Some(s) = generating.filter(|_| r.completion_tokens > 0) {
        h.tokens_per_second.record(f64::from(r.completion_tokens) / s);
    }
    for (c, n) in h.tokens.iter().zip([r.prompt_tokens, r.cached_tokens, r.completion_tokens]) {
        c.increment(u64::from(n));
    }
    h.genai_tokens[0].record(f64::from(r.prompt_tokens));
    h.genai_tokens[1].record(f64::from(r.completion_tokens));
}

#[cfg(test)]
mod tests {
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
