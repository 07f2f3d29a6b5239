//! The inference request path after the HTTP edge: plan (pure: validate, route — aliases and the
//! tiered virtual model —, check the key's scopes and caps and the deployment's cap, check
//! capabilities), admit (reserve against the key's and tenant's limits), then execute (the
//! deployment's queue, a balanced pick, the call bounded in time, retries and fallbacks before
//! the first byte: `resilience::dispatch`), then settle.
//!
//! Invariant: every request that reached a backend is settled exactly once — on success, error
//! or client disconnect — because settling happens in `Settle`'s `Drop`; settling writes its
//! usage row and reconciles its reservation.

use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderValue;
use axum::response::Response;
use ferrogate_core::queue::Priority;
use ferrogate_core::{
    BackendError, Completion, Deployment, EventStream, GatewayError, GenParams, InferenceRequest, Input, StreamEvent,
    TimeoutKind, tokens,
};
use ferrogate_protocol::openai::{
    ChatCompletionRequest, CompletionRequest, FinishReason, LEGACY_DEFAULT_MAX_TOKENS, Usage, shape,
};
use futures::StreamExt;

use crate::error::ApiError;
use crate::limits::{RateReservation, RequestLimits};
use crate::observability::{Mark, ObsCx, SettleObs};
use crate::resilience::dispatch::{self, Dispatched};
use crate::resilience::tiers;
use crate::state::{AppState, InflightGuard};
use crate::telemetry::{RequestCx, RouteLog};
use crate::tenancy::{Admission, Caller, Metering};

/// Which API shape the client asked for; decides response framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
    Generate,
    Stream,
}

impl Endpoint {
    /// The inference endpoint served at `path`; `None` for every other route.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" => Some(Endpoint::Completion),
            "/generate" => Some(Endpoint::Generate),
            "/stream" => Some(Endpoint::Stream),
            _ => None,
        }
    }

    /// The usage ledger's name (`chat.completions`, `completions`, `generate`, `stream`).
    pub fn ledger_name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completion => "completions",
            Endpoint::Generate => "generate",
            Endpoint::Stream => "stream",
        }
    }

    /// The metrics `endpoint` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completion => "completion",
            Endpoint::Generate => "generate",
            Endpoint::Stream => "stream",
        }
    }
}

/// Everything decided before any effect.
pub struct Plan {
    pub endpoint: Endpoint,
    /// The name the client used, echoed in responses.
    pub model: String,
    pub deployment: Arc<Deployment>,
    pub req: InferenceRequest,
    pub stream: bool,
    pub include_usage: bool,
    /// Local estimate, used only if the backend reports no usage.
    pub prompt_estimate: u32,
    /// The authenticated caller, if auth is on.
    pub caller: Option<Arc<Caller>>,
    /// The reservation made by [`admit`]; moves into `Settle`.
    pub admission: Option<Admission>,
    /// Client IP and rate-limit headers (set when rate limits may apply).
    pub limits: Option<Arc<RequestLimits>>,
    /// The rate-limit counters [`admit`] charged; moves into `Settle`.
    pub rate: Option<RateReservation>,
    /// Queue class (`x-ferrogate-priority`).
    pub priority: Priority,
    /// The tier decision when the virtual model was asked for (`x-ferrogate-route`).
    pub route_note: Option<String>,
    /// Stage marks and trace of the request (observability).
    pub obs: Arc<ObsCx>,
    /// The client's address, for the access log line `Settle` writes.
    pub client_ip: std::net::IpAddr,
    /// Flagged guardrail findings (`x-ferrogate-guardrails`), set by `guardrails::inspect`.
    pub guardrails: Option<String>,
}

pub fn plan_chat(
    st: &AppState,
    cx: &RequestCx,
    r: ChatCompletionRequest,
    endpoint: Endpoint,
) -> Result<Plan, ApiError> {
    // The name is bounded before it is recorded anywhere (ledger row, logs, metrics).
    shape::check_model(&r.model)?;
    note_model(cx, &r.model);
    r.validate()?;
    r.check_shape(&st.shape)?;
    let (stream, include_usage) = (r.is_stream(), r.include_usage());
    let params = GenParams {
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r.top_k,
        min_p: r.min_p,
        max_tokens: r.effective_max_tokens(),
        stop: r.stop.map(|s| s.into_vec()).unwrap_or_default(),
        seed: r.seed,
        frequency_penalty: r.frequency_penalty,
        presence_penalty: r.presence_penalty,
        repetition_penalty: r.repetition_penalty,
        user: r.user,
    };
    let prompt_estimate = tokens::estimate_messages(&r.messages);
    let has_images = r.messages.iter().any(|m| m.has_non_text_parts());
    let has_tools = r.tools.as_ref().is_some_and(|t| !t.is_null());
    let input = Input::Chat { messages: r.messages, tools: r.tools, tool_choice: r.tool_choice };
    let mut plan = route(st, cx, endpoint, r.model, input, params, r.extra, prompt_estimate)?;
    let caps = plan.deployment.capabilities();
    if has_images && !caps.images {
        return Err(ApiError::invalid(
            Some("messages".into()),
            format!("Model '{}' accepts only text content", plan.model),
        ));
    }
    if has_tools && !caps.tools {
        return Err(ApiError::invalid(Some("tools".into()), format!("Model '{}' does not support tools", plan.model)));
    }
    (plan.stream, plan.include_usage, plan.prompt_estimate) = (stream, include_usage, prompt_estimate);
    Ok(plan)
}

pub fn plan_completion(st: &AppState, cx: &RequestCx, r: CompletionRequest) -> Result<Plan, ApiError> {
    shape::check_model(&r.model)?;
    note_model(cx, &r.model);
    r.validate()?;
    let prompt = r.prompt_text().to_owned();
    let params = GenParams {
        temperature: r.temperature,
        top_p: r.top_p,
        top_k: r.top_k,
        min_p: r.min_p,
        max_tokens: Some(r.max_tokens.unwrap_or(LEGACY_DEFAULT_MAX_TOKENS)),
        stop: r.stop.map(|s| s.into_vec()).unwrap_or_default(),
        seed: r.seed,
        frequency_penalty: r.frequency_penalty,
        presence_penalty: r.presence_penalty,
        repetition_penalty: r.repetition_penalty,
        user: r.user,
    };
    let (stream, include_usage) = (r.stream == Some(true), r.stream_options.is_some_and(|o| o.include_usage));
    let prompt_estimate = tokens::estimate(&prompt);
    let mut plan = route(st, cx, Endpoint::Completion, r.model, Input::Text(prompt), params, r.extra, prompt_estimate)?;
    if !plan.deployment.capabilities().text_completion {
        return Err(ApiError::invalid(
            Some("model".into()),
            format!("Model '{}' does not support text completions", plan.model),
        ));
    }
    (plan.stream, plan.include_usage, plan.prompt_estimate) = (stream, include_usage, prompt_estimate);
    Ok(plan)
}

/// The model the client asked for, for the usage row of a request rejected before routing.
fn note_model(cx: &RequestCx, model: &str) {
    if let Some(c) = &cx.caller {
        c.meter_model(model);
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    st: &AppState,
    cx: &RequestCx,
    endpoint: Endpoint,
    model: String,
    input: Input,
    mut params: GenParams,
    extra: serde_json::Map<String, serde_json::Value>,
    prompt_estimate: u32,
) -> Result<Plan, ApiError> {
    let priority = cx.hints.priority()?;
    let requested = model.clone();
    let (deployment, model, route_note) = resolve(st, cx, model, &input, prompt_estimate, params.max_tokens)?;
    check_fields(&deployment, &extra)?;
    cx.obs.routed(&deployment.name);
    if let Some(c) = &cx.caller {
        // The name asked for (an alias, `auto`) or the deployment's own name may be in scope.
        c.check_model(&deployment, &requested)?;
        params.max_tokens = c.cap_max_tokens(params.max_tokens, st.default_max_tokens())?;
    }
    params.max_tokens = deployment.cap_max_tokens(params.max_tokens);
    let req = InferenceRequest {
        request_id: cx.id.clone(),
        model: deployment.name.clone(),
        input,
        params,
        extra,
        obs: Default::default(),
    };
    Ok(Plan {
        endpoint,
        model,
        deployment,
        req,
        stream: false,
        include_usage: false,
        prompt_estimate: 0,
        caller: cx.caller.clone(),
        admission: None,
        limits: cx.limits.clone(),
        rate: None,
        priority,
        route_note,
        obs: Arc::clone(&cx.obs),
        client_ip: cx.client_ip,
        guardrails: None,
    })
}

/// Untyped client fields go upstream only if every backend of the deployment accepts them (its
/// kind's allow-list) or the deployment passes vendor fields through (`extra_body`): 400 else,
/// like OpenAI's own "Unrecognized request argument".
fn check_fields(deployment: &Deployment, extra: &serde_json::Map<String, serde_json::Value>) -> Result<(), ApiError> {
    refuse_logprobs(extra)?;
    match extra.keys().find(|k| !deployment.accepts_field(k)) {
        None => Ok(()),
        Some(k) => Err(ApiError::invalid(
            Some(shape::clip(k)),
            format!(
                "Unrecognized request argument supplied: '{}' (model '{}' passes vendor fields only with extra_body)",
                shape::clip(k),
                deployment.name
            ),
        )),
    }
}

/// No backend's answer carries log probabilities back to the client yet (the OpenAI adapter's
/// responses had `logprobs: null` while the upstream was asked for them): refused clearly rather
/// than silently answered without.
fn refuse_logprobs(extra: &serde_json::Map<String, serde_json::Value>) -> Result<(), ApiError> {
    use serde_json::Value;
    for field in ["logprobs", "top_logprobs"] {
        if extra.get(field).is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false))) {
            let msg = format!("'{field}' is not supported: ferrogate does not return log probabilities");
            return Err(ApiError::invalid(Some(field.into()), msg));
        }
    }
    Ok(())
}

/// Model name → deployment: aliases, and the virtual tiered model (whose choice is then the
/// model name echoed to the client, explained in `route_note`).
fn resolve(
    st: &AppState,
    cx: &RequestCx,
    model: String,
    input: &Input,
    prompt_tokens: u32,
    max_tokens: Option<u32>,
) -> Result<(Arc<Deployment>, String, Option<String>), ApiError> {
    if let Some(t) = st.tiers.as_ref().filter(|t| t.model == model) {
        let header = cx.hints.tier()?;
        let caller = cx.caller.as_deref();
        let (name, decision) = t.decide(&tiers::Request { input, prompt_tokens, max_tokens, header, caller });
        let d = st.registry.resolve(name).cloned().ok_or_else(|| GatewayError::ModelNotFound(name.to_owned()))?;
        return Ok((d, name.to_owned(), Some(decision.to_string())));
    }
    let d = st.registry.resolve(&model).cloned().ok_or_else(|| GatewayError::ModelNotFound(model.clone()))?;
    Ok((d, model, None))
}

/// Runs the guardrails (docs/GUARDRAILS.md: 400 when a blocking check finds something, PII
/// redacted before dispatch when configured), then reserves the request's prompt estimate +
/// `max_tokens` against its key's and tenant's budgets and concurrency, then against the rate
/// limits (rules, and the key's and tenant's rates): 429 when refused. An effect, so after
/// planning, before execution.
pub async fn admit(st: &AppState, mut plan: Plan) -> Result<Plan, ApiError> {
    if let Some(g) = &st.guardrails {
        let tenant = plan.caller.as_ref().and_then(|c| c.principal.key()).map(|k| k.tenant.name.clone());
        plan.guardrails = g
            .inspect(crate::guardrails::Request {
                registry: &st.registry,
                recorder: &st.obs.metrics,
                deployment: &plan.deployment.name,
                tenant: tenant.as_deref(),
                req: &mut plan.req,
            })
            .await?;
    }
    if let (Some(t), Some(who)) = (&st.tenancy, plan.caller.as_ref().and_then(|c| c.principal.key())) {
        plan.admission = t.admit(who, &plan.model, plan.prompt_estimate, plan.req.params.max_tokens).await?;
    }
    // === rate limits (docs/GOVERNANCE.md) ===
    plan.rate = st.limits.admit(&mut plan, st.default_max_tokens()).await?;
    plan.obs.mark(Mark::Admitted);
    Ok(plan)
}

/// Runs a non-streaming request; each attempt is bounded by the server's request timeout.
pub async fn execute_unary(st: &AppState, mut plan: Plan) -> Result<(Completion, Usage, Settle), ApiError> {
    let limit = st.request_timeout;
    let call = |b: Arc<dyn ferrogate_core::Backend>, req| async move {
        match tokio::time::timeout(limit, b.chat(req)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(TimeoutKind::Total)),
        }
    };
    let Dispatched { mut lease, value: completion, mut settle } = dispatch::run(st, &mut plan, call).await?;
    lease.target.succeeded();
    settle.note_text(&completion.text);
    let usage =
        completion.usage.unwrap_or_else(|| Usage::new(plan.prompt_estimate, tokens::estimate(&completion.text), None));
    settle.finish(completion.finish_reason, usage);
    Ok((completion, usage, settle))
}

/// Starts a streaming request; resolves with the backend's first event (retries and fallbacks
/// happen before it, never after).
pub async fn execute_stream(
    st: &AppState,
    plan: &mut Plan,
) -> Result<Dispatched<(StreamEvent, EventStream)>, ApiError> {
    let call = |b: Arc<dyn ferrogate_core::Backend>, req| async move {
        let mut events = b.chat_stream(req).await?;
        match events.next().await {
            Some(Ok(first)) => Ok((first, events)),
            Some(Err(e)) => Err(e),
            None => Err(BackendError::Protocol("upstream ended the stream before any event".into())),
        }
    };
    dispatch::run(st, plan, call).await
}

/// What the client learns about routing: the access log's model and backend
/// (`x-ferrogate-backend`), `x-ferrogate-fallback: from->to` when a fallback served, and
/// `x-ferrogate-route` when the tiered model decided.
pub fn decorate(res: &mut Response, requested: &str, s: &Settle) {
    let h = res.headers_mut();
    if let Some(from) = &s.fallback_from
        && let Ok(v) = HeaderValue::from_str(&format!("{from}->{}", s.model))
    {
        h.insert("x-ferrogate-fallback", v);
    }
    if let Some(v) = s.route_note.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-ferrogate-route", v);
    }
    if let Some(v) = s.guardrails.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-ferrogate-guardrails", v);
    }
    res.extensions_mut().insert(RouteLog { model: requested.to_owned(), backend: s.backend.clone() });
}

/// How a request ended, for the log (and later the usage ledger).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Still running when dropped: the client went away.
    Cancelled,
    Finished(FinishReason),
    /// `status`: what the client got (200 once a stream had started); `code`: the error's code
    /// (or type), a closed set.
    Failed {
        cause: String,
        status: u16,
        code: &'static str,
    },
}

/// Settles a request exactly once, when dropped.
pub struct Settle {
    pub request_id: String,
    pub endpoint: Endpoint,
    pub model: String,
    /// The upstream's model name (the ledger's `model_served`).
    pub model_served: String,
    pub backend: String,
    pub started: Instant,
    pub stream: bool,
    pub first_token: Option<Instant>,
    pub prompt_estimate: u32,
    /// Content deltas delivered (the local completion-token count for streams).
    pub deltas: u32,
    pub usage: Option<Usage>,
    pub outcome: Outcome,
    /// The deployment first planned, when a fallback deployment serves instead.
    pub fallback_from: Option<String>,
    /// The tier decision, if the virtual model was asked for.
    pub route_note: Option<String>,
    /// The client's address (the access log's `client_ip`).
    pub client_ip: std::net::IpAddr,
    /// Flagged guardrail findings (header and access log).
    pub guardrails: Option<String>,
    /// The usage row and the budget reconciliation, done on drop.
    metering: Metering,
    /// Metrics, dashboard feed and spans, recorded on drop.
    obs: SettleObs,
    _inflight: InflightGuard,
}

impl Settle {
    pub fn new(st: &AppState, plan: &mut Plan) -> Self {
        Self {
            obs: SettleObs::start(st, plan),
            metering: Metering::start(st, plan),
            request_id: plan.req.request_id.clone(),
            client_ip: plan.client_ip,
            endpoint: plan.endpoint,
            model: plan.deployment.name.clone(),
            // Set by each dispatch attempt.
            model_served: String::new(),
            backend: String::new(),
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
            _inflight: st.track(),
        }
    }

    /// Records the failure and hands the error back for the response.
    pub fn fail(&mut self, e: ApiError) -> ApiError {
        let status = if self.first_token.is_some() { 200 } else { e.status.as_u16() };
        let cause = e.cause.clone().unwrap_or_else(|| e.message.clone());
        self.outcome = Outcome::Failed { cause, status, code: e.code.unwrap_or(e.kind) };
        e
    }

    /// Answer text as it reaches the client (kept only for `log.prompts`).
    pub fn note_text(&mut self, text: &str) {
        self.obs.note_text(text);
    }

    pub fn finish(&mut self, reason: FinishReason, usage: Usage) {
        self.outcome = Outcome::Finished(reason);
        self.usage = Some(usage);
    }

    /// The usage to report: the backend's, else a local count of what was delivered.
    pub fn effective_usage(&self) -> Usage {
        self.usage.unwrap_or_else(|| Usage::new(self.prompt_estimate, self.deltas, None))
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let usage = self.effective_usage();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let ttft_ms = self.first_token.map(|t| (t - self.started).as_secs_f64() * 1000.0);
        let (outcome, error) = match &self.outcome {
            Outcome::Cancelled => ("cancelled", None),
            Outcome::Finished(r) => (r.as_str(), None),
            Outcome::Failed { cause, .. } => ("error", Some(cause.as_str())),
        };
        tracing::info!(
            request_id = %self.request_id,
            client_ip = %self.client_ip,
            endpoint = self.endpoint.as_str(),
            model = %self.model,
            backend = %self.backend,
            key = self.metering.key_prefix(),
            stream = self.stream,
            outcome,
            error,
            prompt_tokens = usage.prompt_tokens,
            cached_tokens = usage.cached_tokens(),
            completion_tokens = usage.completion_tokens,
            latency_ms,
            ttft_ms,
            trace_id = self.obs.trace_id(),
            tenant = self.obs.tenant(),
            status = self.obs.status(self),
            guardrails = self.guardrails.as_deref(),
            "request settled"
        );
        let mut metering = std::mem::take(&mut self.metering);
        metering.settle(self);
        let obs = std::mem::take(&mut self.obs);
        obs.record(self, usage);
    }
}
