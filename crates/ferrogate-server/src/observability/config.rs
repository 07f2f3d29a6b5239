//! `[metrics]`, `[tracing]` and `[dashboard]`: raw serde structs (`deny_unknown_fields`) and their
//! checks, reported with every other configuration problem.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format).
    pub enabled: bool,
    /// Serve `/metrics` on this address instead of the main listener (no auth there), e.g.
    /// `127.0.0.1:9464`. Empty: on the main listener.
    pub listen: String,
    /// On the main listener: `/metrics` without a key. Off by default (issue 17): it needs the
    /// master key when tenancy is on (a tenant's key must not read every tenant's traffic), else
    /// a static key. A gateway with no keys at all is open, `/metrics` included.
    pub public: bool,
    /// Add a `tenant` label (tenant id) to request and token counters. Off by default: one
    /// series per tenant, so only for a bounded number of tenants.
    pub tenant_labels: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: String::new(), public: false, tenant_labels: false }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Export OpenTelemetry traces.
    pub enabled: bool,
    /// OTLP/HTTP collector: a base URL (`/v1/traces` is appended) or the full traces URL.
    pub endpoint: String,
    /// Only `http/protobuf` (OTLP over HTTP, protobuf bodies).
    pub protocol: String,
    /// Share of new traces recorded, 0 to 1. A client's sampled `traceparent` is always followed.
    pub sampling_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// How often finished spans are sent, ms.
    pub export_interval_ms: u64,
    /// Bound of one export request, ms.
    pub export_timeout_ms: u64,
    /// Spans waiting for export; beyond this new spans are dropped (never blocks a request).
    pub max_queue_spans: usize,
    /// Most spans in one export request. Small batches keep each export's burst short: the
    /// kernel's loopback/TCP work of a POST is not preemptible, and a 512-span POST (~100 kB)
    /// delays the requests that arrive meanwhile (docs/OBSERVABILITY.md).
    pub max_export_batch_spans: usize,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:4318".into(),
            protocol: "http/protobuf".into(),
            sampling_ratio: 1.0,
            service_name: "ferrogate".into(),
            export_interval_ms: 1000,
            export_timeout_ms: 5000,
            max_queue_spans: 8192,
            max_export_batch_spans: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the live dashboard at `/dashboard`.
    pub enabled: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Everything observability reads from the configuration.
#[derive(Debug, Clone, Default)]
pub struct ObservabilityConfig {
    pub metrics: MetricsConfig,
    /// Checked: `Some` when `metrics.listen` names an address.
    pub metrics_listen: Option<SocketAddr>,
    pub tracing: TracingConfig,
    pub dashboard: DashboardConfig,
    /// `log.prompts`: log prompt and response text (redacted) at settle.
    pub log_prompts: bool,
}

/// Checks the three tables; problems go to `errs`.
pub fn check(
    metrics: MetricsConfig,
    tracing: TracingConfig,
    dashboard: DashboardConfig,
    log_prompts: bool,
    errs: &mut Vec<String>,
) -> ObservabilityConfig {
    let metrics_listen = match metrics.listen.trim() {
        "" => None,
        l => match l.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                errs.push(format!("metrics.listen: '{l}' is not an address like 127.0.0.1:9464 ({e})"));
                None
            }
        },
    };
    if !(0.0..=1.0).contains(&tracing.sampling_ratio) || tracing.sampling_ratio.is_nan() {
        errs.push(format!("tracing.sampling_ratio must be between 0 and 1 (got {})", tracing.sampling_ratio));
    }
    if tracing.protocol != "http/protobuf" {
        errs.push(format!("tracing.protocol: only \"http/protobuf\" is supported (got \"{}\")", tracing.protocol));
    }
    if tracing.enabled && !(tracing.endpoint.starts_with("http://") || tracing.endpoint.starts_with("https://")) {
        errs.push(format!("tracing.endpoint: '{}' must be an http:// or https:// URL", tracing.endpoint));
    }
    if tracing.max_export_batch_spans == 0 || tracing.max_export_batch_spans > tracing.max_queue_spans {
        errs.push(format!(
            "tracing.max_export_batch_spans must be between 1 and max_queue_spans ({}), got {}",
            tracing.max_queue_spans, tracing.max_export_batch_spans
        ));
    }
    for (field, v) in
        [("export_interval_ms", tracing.export_interval_ms), ("export_timeout_ms", tracing.export_timeout_ms)]
    {
        if v == 0 {
            errs.push(format!("tracing.{field} must be greater than 0"));
        }
    }
    if tracing.service_name.trim().is_empty() {
        errs.push("tracing.service_name must not be empty".into());
    }
    ObservabilityConfig { metrics, metrics_listen, tracing, dashboard, log_prompts }
}
