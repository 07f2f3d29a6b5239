//! What observability does for a request that reached a backend, beyond the record every
//! request gets (`Observability::record`): the `backend` span opened at dispatch — whose context
//! becomes the `traceparent` sent upstream —, the engine-phase spans, GenAI attributes on the
//! root, the `settle` span, and the opt-in prompt/answer log line.
//!
//! An unsampled request forwards the root's (unsampled) `traceparent` and records no spans.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ferrogate_core::{EnginePhases, InferenceRequest};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};

use super::content;
use super::cx::ObsCx;
use super::trace::RequestTrace;
use crate::request::record::{Outcome, RequestRecord};

#[derive(Default)]
pub struct SettleObs {
    inner: Option<Inner>,
}

struct Inner {
    cx: Arc<ObsCx>,
    /// The open `backend` span (sampled requests).
    attempt: Option<Context>,
    phases: Option<Arc<EnginePhases>>,
    /// `log.prompts`: the prompt and the answer so far (`None`: not logging content).
    content: Option<(String, String)>,
}

impl SettleObs {
    /// Opens the `backend` span of `deployment` and sets the trace headers `req` carries
    /// upstream; `log_prompts`: keep the prompt and answer for the content log line.
    pub fn start(cx: &Arc<ObsCx>, deployment: &str, req: &mut InferenceRequest, log_prompts: bool) -> Self {
        let cx = Arc::clone(cx);
        cx.recorded_elsewhere();
        let (mut attempt, mut phases) = (None, None);
        match &cx.trace {
            Some(t) if t.sampled => {
                let attrs = vec![
                    // The backend is known per attempt: set when the span ends.
                    KeyValue::new("ferrogate.deployment", deployment.to_owned()),
                    KeyValue::new("gen_ai.request.model", deployment.to_owned()),
                ];
                let span = t.open(None, "backend", SystemTime::now(), attrs);
                req.obs.trace_headers = vec![("traceparent", RequestTrace::traceparent(&span))];
                let p = Arc::new(EnginePhases::default());
                req.obs.phases = Some(Arc::clone(&p));
                (attempt, phases) = (Some(span), Some(p));
            }
            Some(t) => req.obs.trace_headers = vec![("traceparent", RequestTrace::traceparent(t.root_context()))],
            None => {}
        }
        let content = log_prompts.then(|| (content::prompt_text(&req.input), String::new()));
        Self { inner: Some(Inner { cx, attempt, phases, content }) }
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

    /// The content log line and the spans of the finished request `r`, ended at `end`.
    pub fn finish(self, r: &RequestRecord<'_>, end: Instant) {
        let Some(i) = self.inner else { return };
        if let Some((prompt, answer)) = &i.content {
            tracing::info!(
                request_id = %r.request_id,
                trace_id = i.cx.trace_id(),
                prompt = %content::redact(prompt),
                response = %content::redact(answer),
                "request content"
            );
        }
        if let Some(t) = i.cx.sampled() {
            spans(&i, t, r, end);
        }
    }
}

/// The attempt and engine-phase spans, GenAI attributes on the root, and the `settle` span.
fn spans(i: &Inner, t: &RequestTrace, r: &RequestRecord<'_>, end: Instant) {
    let clock = i.cx.clock;
    let w = |at: Instant| clock.wall(at);
    let error = r.outcome.error_type();
    let backend = r.backend.unwrap_or_default().to_owned();
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
        span.set_attribute(KeyValue::new("ferrogate.backend", backend.clone()));
        if error != "none" {
            span.set_attribute(KeyValue::new("error.type", error));
            span.set_status(opentelemetry::trace::Status::error(error));
        }
        span.end_with_timestamp(w(end));
    }
    let finish = match r.outcome {
        Outcome::Finished(reason) => reason.as_str(),
        _ => error,
    };
    let operation = if r.endpoint.as_str() == "completion" { "text_completion" } else { "chat" };
    t.set([
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("gen_ai.request.model", r.deployment.to_owned()),
        KeyValue::new("gen_ai.response.model", r.model_served.unwrap_or_default().to_owned()),
        KeyValue::new("gen_ai.usage.input_tokens", i64::from(r.usage.prompt_tokens)),
        KeyValue::new("gen_ai.usage.output_tokens", i64::from(r.usage.completion_tokens)),
        KeyValue::new(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(vec![opentelemetry::StringValue::from(finish)].into()),
        ),
        KeyValue::new("ferrogate.request_id", r.request_id.to_owned()),
        KeyValue::new("ferrogate.backend", backend),
        KeyValue::new("ferrogate.stream", r.stream),
        KeyValue::new("http.response.status_code", i64::from(r.status)),
    ]);
    if error != "none" {
        t.error(error);
    }
    t.child(None, "settle", w(end), SystemTime::now(), vec![]);
}
