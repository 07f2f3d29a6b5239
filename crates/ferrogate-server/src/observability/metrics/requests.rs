//! The request concern: one [`RequestSample`] per finished inference request (read off its
//! `RequestRecord`), recorded on cached handles on the success path and with labels built per
//! call otherwise (errors, cancellations, tenant labels).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

use super::*;
use crate::request::record::RequestRecord;

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

pub(crate) type OkCache = HashMap<String, HashMap<String, [Option<Arc<OkHandles>>; ENDPOINTS.len()]>>;

/// Every series a successful request (without a tenant label) updates.
pub(crate) struct OkHandles {
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

impl Metrics {
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
    pub(super) fn request_labelled(&self, r: &RequestSample<'_>) {
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

    pub fn set_active_requests(&self, n: usize) {
        self.gauge(ACTIVE_REQUESTS, vec![]).set(n as f64);
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
