//! What `Settle` does for observability, once per request that reached a backend: metrics, the
//! dashboard feed entry, and the spans of the backend attempt, the engine phases and settling.
//!
//! At dispatch ([`SettleObs::start`]) a sampled request opens its `backend` span, whose context
//! becomes the `traceparent` sent upstream, and gets an `EnginePhases` recorder for the embedded
//! engine; an unsampled one forwards the root's (unsampled) `traceparent` and records nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use ferrogate_core::EnginePhases;
use ferrogate_protocol::openai::Usage;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

use super::content;
use super::feed::{self, Entry};
use super::metrics::RequestRecord;
use super::trace::RequestTrace;
use super::{ObsCx, Observability};
use crate::pipeline::{Outcome, Plan, Settle};
use crate::state::AppState;

#[derive(Default)]
pub struct SettleObs {
    inner: Option<Inner>,
}

struct Inner {
    obs: Arc<Observability>,
    cx: Arc<ObsCx>,
    /// Tenant name (stored keys): feed, and the metrics label when enabled.
    tenant: Option<String>,
    /// The open `backend` span (sampled requests).
    attempt: Option<Context>,
    phases: Option<Arc<EnginePhases>>,
    /// `log.prompts`: the prompt and the answer so far (`None`: not logging content).
    content: Option<(String, String)>,
}

impl SettleObs {
    pub fn start(st: &AppState, plan: &mut Plan) -> Self {
        let cx = Arc::clone(&plan.obs);
        cx.settling.store(true, Ordering::Relaxed);
        let tenant = plan.caller.as_ref().and_then(|c| c.principal.key()).map(|k| k.tenant.name.clone());
        let (mut attempt, mut phases) = (None, None);
        match &cx.trace {
            Some(t) if t.sampled => {
                let attrs = vec![
                    // The backend is known per attempt: set when the span ends.
                    KeyValue::new("ferrogate.deployment", plan.deployment.name.clone()),
                    KeyValue::new("gen_ai.request.model", plan.req.model.clone()),
                ];
                let span = t.open(None, "backend", SystemTime::now(), attrs);
                plan.req.obs.trace_headers = vec![("traceparent", RequestTrace::traceparent(&span))];
                let p = Arc::new(EnginePhases::default());
                plan.req.obs.phases = Some(Arc::clone(&p));
                (attempt, phases) = (Some(span), Some(p));
            }
            Some(t) => plan.req.obs.trace_headers = vec![("traceparent", RequestTrace::traceparent(t.root_context()))],
            None => {}
        }
        let content = st.obs.cfg.log_prompts.then(|| (content::prompt_text(&plan.req.input), String::new()));
        Self { inner: Some(Inner { obs: Arc::clone(&st.obs), cx, tenant, attempt, phases, content }) }
    }

    /// Answer text as it is delivered (kept only when `log.prompts` is on).
    pub fn note_text(&mut self, text: &str) {
        if let Some((_, answer)) = self.inner.as_mut().and_then(|i| i.content.as_mut()) {
            answer.push_str(text);
        }
    }

    pub fn trace_id(&self) -> Option<String> {
        self.inner.as_ref().and_then(|i| i.cx.trace_id())
    }

    pub fn tenant(&self) -> Option<&str> {
        self.inner.as_ref().and_then(|i| i.tenant.as_deref())
    }

    /// What the client got: 200, the error status, or 499 when it went away.
    pub fn status(&self, s: &Settle) -> u16 {
        outcome(s).0
    }

    /// Records the finished request; `usage`: what it is charged.
    pub fn record(self, s: &Settle, usage: Usage) {
        let Some(i) = self.inner else { return };
        let end = Instant::now();
        let (status, error_type) = outcome(s);
        let start = i.cx.clock.instant;
        let r = RequestRecord {
            endpoint: s.endpoint.as_str(),
            deployment: &s.model,
            backend: Some(&s.backend),
            status,
            error_type,
            tenant: i.tenant.as_deref(),
            duration: end - start,
            ttft: s.first_token.map(|t| t.saturating_duration_since(start)),
            backend_duration: Some(end - s.started),
            decode: s.first_token.filter(|_| s.stream).map(|t| end - t),
            prompt_tokens: usage.prompt_tokens,
            cached_tokens: usage.cached_tokens(),
            completion_tokens: usage.completion_tokens,
            has_usage: true,
        };
        let cfg = &i.obs.cfg;
        if cfg.metrics.enabled {
            i.obs.metrics.request(&r);
        }
        if let Some((prompt, answer)) = &i.content {
            tracing::info!(
                request_id = %s.request_id,
                trace_id = i.cx.trace_id(),
                prompt = %content::redact(prompt),
                response = %content::redact(answer),
                "request content"
            );
        }
        if cfg.dashboard.enabled {
            i.obs.feed.push(feed_entry(s, &r, &usage, i.tenant.clone()));
        }
        if let Some(t) = i.cx.sampled() {
            spans(&i, t, s, &usage, end, status, error_type);
        }
    }
}

fn feed_entry(s: &Settle, r: &RequestRecord<'_>, usage: &Usage, tenant: Option<String>) -> Entry {
    Entry {
        at_ms: feed::now_ms(),
        request_id: s.request_id.clone(),
        endpoint: r.endpoint,
        deployment: s.model.clone(),
        backend: Some(s.backend.clone()),
        status: r.status,
        error_type: r.error_type,
        latency_ms: r.duration.as_secs_f64() * 1000.0,
        ttft_ms: r.ttft.map(|t| t.as_secs_f64() * 1000.0),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        tenant,
    }
}

fn outcome(s: &Settle) -> (u16, &'static str) {
    match &s.outcome {
        Outcome::Cancelled => (499, "cancelled"),
        Outcome::Finished(_) => (200, "none"),
        Outcome::Failed { status, code, .. } => (*status, *code),
    }
}

/// The attempt and engine-phase spans, GenAI attributes on the root, and the `settle` span.
fn spans(i: &Inner, t: &RequestTrace, s: &Settle, usage: &Usage, end: Instant, status: u16, error: &'static str) {
    let clock = i.cx.clock;
    let w = |at: Instant| clock.wall(at);
    if let Some(attempt) = &i.attempt {
        if let Some(p) = &i.phases {
            let phase = |name, a: Option<&Instant>, b: Option<&Instant>| {
                if let (Some(a), Some(b)) = (a, b) {
                    t.child(Some(attempt), name, w(*a), w(*b), vec![]);
                }
            };
            phase("engine.queue", p.submitted.get(), p.started.get());
            phase("engine.prefill", p.started.get(), p.first_token.get().or(p.done.get()));
            phase("engine.decode", p.first_token.get(), p.done.get());
        }
        let span = attempt.span();
        span.set_attribute(KeyValue::new("ferrogate.backend", s.backend.clone()));
        if error != "none" {
            span.set_attribute(KeyValue::new("error.type", error));
            span.set_status(opentelemetry::trace::Status::error(error));
        }
        span.end_with_timestamp(w(end));
    }
    let finish = match &s.outcome {
        Outcome::Finished(r) => r.as_str(),
        _ => error,
    };
    let operation = if s.endpoint.as_str() == "completion" { "text_completion" } else { "chat" };
    t.set([
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.request.model", s.model.clone()),
        KeyValue::new("gen_ai.response.model", s.model_served.clone()),
        KeyValue::new("gen_ai.usage.input_tokens", i64::from(usage.prompt_tokens)),
        KeyValue::new("gen_ai.usage.output_tokens", i64::from(usage.completion_tokens)),
        KeyValue::new(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(finish)].into()),
        ),
        KeyValue::new("ferrogate.request_id", s.request_id.clone()),
        KeyValue::new("ferrogate.backend", s.backend.clone()),
        KeyValue::new("ferrogate.stream", s.stream),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ]);
    if error != "none" {
        t.error(error);
    }
    t.child(None, "settle", w(end), SystemTime::now(), vec![]);
}
