//! The one settle path. Every inference request ends in one [`RequestRecord`], built once and
//! handed to [`emit`], which feeds every sink from it: the access-log line, the usage-ledger row,
//! the metrics and the dashboard feed (and, for a request that reached a backend, its spans).
//!
//! - A request that reached a backend holds a [`Settle`] from its first granted queue slot;
//!   `Settle` reconciles its reservations with what was used and records it in `Drop` — on
//!   success, error, or client disconnect, exactly once.
//! - A request refused or dropped before that is recorded by the access layer through the
//!   same [`emit`] (`access::Unsettled`).
//!
//! Invariant: exactly one record per inference request; the ledger slot (`RequestMeter::take`)
//! is taken by whoever records it, so each metered request leaves exactly one usage row.

use std::sync::Arc;
use std::time::Instant;

use ferrogate_core::Completion;
use ferrogate_protocol::openai::{FinishReason, Usage};

use crate::error::ApiError;
use crate::limits::client_ip::IpText;
use crate::limits::reservation::RateReservation;
use crate::observability::SettleObs;
use crate::request::Endpoint;
use crate::request::caller::Caller;
use crate::request::names::{BackendName, DeploymentName, RequestedModel, UpstreamModel};
use crate::request::plan::Plan;
use crate::request::record::{Charged, Outcome, RequestRecord};
use crate::state::{AppState, InflightGuard};
use crate::tenancy::meter;
use crate::tenancy::quotas::Admission;

/// The cache entries a streamed miss fills when it finishes whole: the exact cache's
/// (`pipeline::cache`), the semantic index's (`pipeline::semantic`), or both.
pub struct CacheFill {
    /// The exact cache's key and time to live.
    pub exact: Option<(ferrogate_core::cache::CacheKey, std::time::Duration)>,
    /// The semantic index's scope and vector (`Semantic::Miss`), or `Off`.
    pub semantic: crate::pipeline::semantic::Semantic,
    /// The model name the answer carries.
    pub model: String,
    pub text: String,
}

/// What admission reserved for a request; settled with the tokens actually used.
#[derive(Default)]
pub struct Reservations {
    /// The key's and tenant's budgets and concurrency.
    pub budget: Option<Admission>,
    /// The rate-limit counters.
    pub rate: Option<RateReservation>,
}

impl Reservations {
    fn settle(&mut self, c: Charged) {
        if let Some(a) = self.budget.take() {
            a.finish(c.prompt, c.completion);
        }
        if let Some(r) = self.rate.take() {
            r.finish(c.total());
        }
    }
}

/// A request that reached a backend; settles exactly once, when dropped.
pub struct Settle {
    pub request_id: Arc<str>,
    pub endpoint: Endpoint,
    /// The deployment serving (a fallback's, once one serves).
    pub deployment: DeploymentName,
    /// The upstream's model name (the ledger's `model_served`), set per attempt.
    pub model_served: UpstreamModel,
    /// The backend of the current (last) attempt.
    pub backend: BackendName,
    /// Why that backend was picked (`x-ferrogate-backend-route`, with `server.backend_header`).
    pub backend_route: Option<ferrogate_core::affinity::score::Route>,
    /// Dispatch began.
    pub started: Instant,
    pub stream: bool,
    /// The first content reached the client (a stream committed to 200).
    pub first_token: Option<Instant>,
    pub prompt_estimate: u32,
    /// Content deltas delivered (the local completion-token count for streams).
    pub deltas: u32,
    pub usage: Option<Usage>,
    pub outcome: Outcome,
    /// The deployment first planned, when a fallback deployment serves instead.
    pub fallback_from: Option<DeploymentName>,
    /// The tier decision, if the virtual model was asked for.
    pub route_note: Option<String>,
    /// Flagged guardrail findings (header and access log).
    pub guardrails: Option<String>,
    /// `x-ferrogate-cache`: `hit`, `semantic-hit` or `miss` for a cacheable request, `None`
    /// otherwise.
    pub cache: Option<&'static str>,
    /// `x-ferrogate-cache-similarity` of a semantic hit.
    pub similarity: Option<f32>,
    /// A streamed miss: its text is collected and the cache filled when it finishes.
    pub fill: Option<CacheFill>,
    requested: RequestedModel,
    client_ip: std::net::IpAddr,
    arrived: Instant,
    caller: Option<Arc<Caller>>,
    /// This `Settle` took the request's ledger slot.
    metered: bool,
    held: Reservations,
    /// Spans and the content log of the backend call.
    obs: SettleObs,
    st: AppState,
    _inflight: InflightGuard,
}

impl Settle {
    pub fn new(st: &AppState, plan: &mut Plan, held: Reservations) -> Self {
        let deployment = plan.deployment_name();
        let obs = SettleObs::start(&plan.obs, &deployment, &mut plan.req, st.obs.cfg.log_prompts);
        let metered =
            st.tenancy.is_some() && plan.caller.as_ref().is_some_and(|c| c.meter.as_ref().is_some_and(|m| m.take()));
        Self {
            request_id: plan.req.request_id.clone(),
            endpoint: plan.endpoint,
            deployment,
            // Set by each dispatch attempt.
            model_served: UpstreamModel::default(),
            backend: BackendName::default(),
            backend_route: None,
            started: Instant::now(),
            stream: plan.stream,
            first_token: None,
            prompt_estimate: plan.prompt_estimate,
            deltas: 0,
            usage: None,
            outcome: Outcome::Cancelled,
            fallback_from: None,
            route_note: plan.route_note.clone(),
            guardrails: plan.guardrails.clone(),
            cache: None,
            similarity: None,
            fill: None,
            requested: plan.requested.clone(),
            client_ip: plan.client_ip,
            arrived: plan.obs.clock.instant,
            caller: plan.caller.clone(),
            metered,
            held,
            obs,
            _inflight: st.track(),
            st: st.clone(),
        }
    }

    /// Records the failure and hands the error back for the response.
    pub fn fail(&mut self, e: ApiError) -> ApiError {
        let cause = e.cause.clone().unwrap_or_else(|| e.message.clone());
        self.outcome = Outcome::Failed { code: e.code, cause };
        e
    }

    /// Answer text as it reaches the client (kept only for `log.prompts`).
    pub fn note_text(&mut self, text: &str) {
        self.obs.note_text(text);
    }

    /// A streamed delta as it reaches the client: its text for `log.prompts` and for the cache
    /// fill of a streamed miss (a stream with tool calls is not cached).
    pub fn note_delta(&mut self, text: &str, tool_calls: bool) {
        self.obs.note_text(text);
        if tool_calls {
            self.fill = None;
        } else if let Some(f) = self.fill.as_mut() {
            f.text.push_str(text);
        }
    }

    pub fn finish(&mut self, reason: FinishReason, usage: Usage) {
        self.outcome = Outcome::Finished(reason);
        self.usage = Some(usage);
        if let Some(f) = self.fill.take() {
            let whole = Completion {
                text: f.text,
                tool_calls: None,
                logprobs: None,
                finish_reason: reason,
                usage: Some(usage),
                raw: None,
            };
            if let Some((key, ttl)) = f.exact {
                crate::pipeline::cache::fill(&self.st, key, ttl, &f.model, &whole, usage);
            }
            crate::pipeline::semantic::fill(&self.st, f.semantic, &f.model, &whole, usage);
        }
    }

    /// The usage to report: the backend's, else a local count of what was delivered.
    pub fn effective_usage(&self) -> Usage {
        self.usage.unwrap_or_else(|| Usage::new(self.prompt_estimate, self.deltas, None))
    }

    /// Answered from the response cache: no backend was called.
    pub fn cache_hit(&self) -> bool {
        matches!(self.cache, Some("hit" | "semantic-hit"))
    }

    /// What the client got: the error's status before the first byte, 200 after it (or on
    /// success), 499 when it went away before any response.
    fn status(&self) -> u16 {
        match (&self.outcome, self.first_token) {
            (_, Some(_)) | (Outcome::Finished(_) | Outcome::Answered, None) => 200,
            (Outcome::Cancelled, None) => 499,
            (Outcome::Failed { code, .. } | Outcome::Refused { code, .. }, None) => code.status().as_u16(),
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let end = Instant::now();
        let started = self.first_token.is_some() || self.outcome == Outcome::Cancelled;
        let charged = meter::charged(self.usage, started, self.prompt_estimate, self.deltas);
        self.held.settle(charged);
        let tenant = self.caller.as_ref().and_then(|c| c.principal.key()).map(|k| k.tenant.name.as_str());
        let hit = self.cache_hit();
        let r = RequestRecord {
            request_id: &self.request_id,
            endpoint: self.endpoint,
            client_ip: self.client_ip,
            caller: self.caller.as_deref(),
            tenant,
            requested: &self.requested,
            deployment: &self.deployment,
            backend: (!hit).then_some(self.backend.as_str()),
            model_served: (!hit).then_some(self.model_served.as_str()),
            stream: self.stream,
            outcome: &self.outcome,
            status: self.status(),
            usage: self.effective_usage(),
            charged,
            dispatched: true,
            started: self.arrived,
            duration: end - self.arrived,
            ttft: self.first_token.map(|t| t.saturating_duration_since(self.arrived)),
            backend_duration: Some(end - self.started),
            decode: self.first_token.filter(|_| self.stream).map(|t| end - t),
            guardrails: self.guardrails.as_deref(),
            cache_hit: hit,
        };
        let trace_id = self.obs.trace_id();
        emit(&self.st, &r, self.metered, trace_id.as_deref());
        std::mem::take(&mut self.obs).finish(&r, end);
    }
}

/// Feeds every sink from one record: the access-log line, the usage-ledger row (when `metered`:
/// the recorder holds the request's ledger slot), the metrics and the dashboard feed.
pub fn emit(st: &AppState, r: &RequestRecord<'_>, metered: bool, trace_id: Option<&str>) {
    log_line(r, trace_id);
    if let (true, Some(t), Some(c)) = (metered, &st.tenancy, r.caller)
        && let Some(m) = &c.meter
    {
        t.ledger.record(meter::usage_row(r, &c.principal, m));
    }
    st.obs.record(r);
}

/// The access-log line of an inference request: `request settled` for one that reached a
/// backend; `request rejected` (info) or `request failed` (warn, a 5xx that is not load
/// shedding) for one that did not.
fn log_line(r: &RequestRecord<'_>, trace_id: Option<&str>) {
    let ip = IpText::new(r.client_ip);
    let key = r.caller.and_then(|c| c.principal.key()).map(|k| k.key.prefix.as_str());
    let latency_ms = r.duration.as_secs_f64() * 1000.0;
    let (outcome, error) = (r.outcome.label(), r.outcome.cause());
    let code = r.outcome.code().map(|c| c.as_str());
    let failed = r.outcome.code().is_some_and(|c| c.status().is_server_error() && !c.is_load_shed());
    if r.dispatched {
        let ttft_ms = r.ttft.map(|t| t.as_secs_f64() * 1000.0);
        let backend = r.backend.unwrap_or_default();
        let (prompt_tokens, completion_tokens) = (r.usage.prompt_tokens, r.usage.completion_tokens);
        macro_rules! settled {
            ($level:ident) => {
                tracing::$level!(
                    request_id = r.request_id,
                    client_ip = ip.as_str(),
                    endpoint = r.endpoint.as_str(),
                    model = r.deployment,
                    backend,
                    key,
                    stream = r.stream,
                    outcome,
                    error,
                    prompt_tokens,
                    cached_tokens = r.usage.cached_tokens(),
                    completion_tokens,
                    latency_ms,
                    ttft_ms,
                    trace_id,
                    tenant = r.tenant,
                    status = r.status,
                    guardrails = r.guardrails,
                    "request settled"
                )
            };
        }
        // An upstream or gateway failure is worth a warning; load shedding and the caller's own
        // errors are not.
        return if failed { settled!(warn) } else { settled!(info) };
    }
    // A request that never reached a backend: failed (warn) or rejected (info, with its outcome).
    macro_rules! unsettled {
        ($level:ident, $message:literal $(, $outcome:ident)?) => {
            tracing::$level!(
                request_id = r.request_id, client_ip = ip.as_str(), endpoint = r.endpoint.as_str(), status = r.status,
                model = r.deployment, key, $($outcome,)? latency_ms, error.code = code, error.cause = error, trace_id,
                $message
            )
        };
    }
    if failed && r.status >= 500 {
        unsettled!(warn, "request failed")
    } else {
        unsettled!(info, "request rejected", outcome)
    }
}
