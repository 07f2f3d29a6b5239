//! The plan stage (pure, no effect): validate the request's shape, route its model name to a
//! deployment (aliases; the tiered virtual model `auto` classifies the request), check the key's
//! model scope and `max_tokens` cap and the deployment's cap, check the deployment can serve
//! what is asked (images, tools, text completions, untyped fields).

use std::sync::Arc;

use ferrogate_core::cache::wants_logprobs;
use ferrogate_core::tier::Decision;
use ferrogate_core::{Deployment, GatewayError, GenParams, InferenceRequest, Input, tokens};
use ferrogate_protocol::openai::{ChatCompletionRequest, CompletionRequest, LEGACY_DEFAULT_MAX_TOKENS, shape};

use crate::error::{ApiError, ErrorCode};
use crate::request::names::RequestedModel;
use crate::request::plan::Plan;
use crate::request::{Endpoint, RequestCx};
use crate::resilience::tiers;
use crate::state::AppState;

/// A chat-shaped request (`/v1/chat/completions`, `/generate`, `/stream`).
pub fn chat(st: &AppState, cx: &RequestCx, r: ChatCompletionRequest, endpoint: Endpoint) -> Result<Plan, ApiError> {
    // The name is bounded before it is recorded anywhere (ledger row, logs, metrics).
    shape::check_model(&r.model)?;
    note_model(cx, &r.model);
    r.validate()?;
    r.check_shape(&st.settings.shape)?;
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
    if !caps.chat {
        let msg = format!("Model '{}' is an embedding model: use /v1/embeddings", plan.shown);
        return Err(ApiError::invalid(Some("model".into()), msg));
    }
    if has_images && !caps.images {
        return Err(ApiError::invalid(
            Some("messages".into()),
            format!("Model '{}' accepts only text content", plan.shown),
        ));
    }
    if has_tools && !caps.tools {
        return Err(ApiError::invalid(Some("tools".into()), format!("Model '{}' does not support tools", plan.shown)));
    }
    if wants_logprobs(&plan.req.extra) && !caps.logprobs {
        let msg = format!("Model '{}' cannot return log probabilities (its backend has none)", plan.shown);
        return Err(ApiError::invalid(Some("logprobs".into()), msg));
    }
    (plan.stream, plan.include_usage, plan.prompt_estimate) = (stream, include_usage, prompt_estimate);
    // An OpenAI chat answer may be the upstream's as it came (its stream's chunks, its whole
    // completion: passthrough); log probabilities are re-framed by the encoder, so they take the
    // decoded path.
    plan.req.passthrough = endpoint == Endpoint::Chat && !wants_logprobs(&plan.req.extra);
    Ok(plan)
}

/// A legacy text completion (`/v1/completions`, Ollama's raw `/api/generate`).
pub fn completion(st: &AppState, cx: &RequestCx, r: CompletionRequest, endpoint: Endpoint) -> Result<Plan, ApiError> {
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
    if r.extra.get("logprobs").is_some_and(|v| !v.is_null()) {
        // Legacy completions' logprobs (token lists and offsets) are not carried back.
        let msg = "'logprobs' is not supported on /v1/completions: use /v1/chat/completions";
        return Err(ApiError::invalid(Some("logprobs".into()), msg.to_owned()));
    }
    let prompt_estimate = tokens::estimate(&prompt);
    let mut plan = route(st, cx, endpoint, r.model, Input::Text(prompt), params, r.extra, prompt_estimate)?;
    if !plan.deployment.capabilities().text_completion {
        return Err(ApiError::invalid(
            Some("model".into()),
            format!("Model '{}' does not support text completions", plan.shown),
        ));
    }
    (plan.stream, plan.include_usage, plan.prompt_estimate) = (stream, include_usage, prompt_estimate);
    Ok(plan)
}

/// A request of another path (embeddings), its model checked and routed as a chat's is.
pub(crate) fn routed(
    st: &AppState,
    cx: &RequestCx,
    endpoint: Endpoint,
    model: String,
    input: Input,
    params: GenParams,
    prompt_estimate: u32,
) -> Result<Plan, ApiError> {
    shape::check_model(&model)?;
    note_model(cx, &model);
    route(st, cx, endpoint, model, input, params, serde_json::Map::new(), prompt_estimate)
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
    let requested = RequestedModel::new(model);
    let (deployment, shown, route_note) =
        resolve(st, cx, endpoint, &requested, &input, prompt_estimate, params.max_tokens)?;
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
        // The upstream's name, set per attempt by dispatch.
        model: String::new(),
        input,
        params,
        extra,
        obs: Default::default(),
        passthrough: false,
    };
    Ok(Plan {
        endpoint,
        requested,
        shown,
        deployment,
        req,
        stream: false,
        include_usage: false,
        prompt_estimate: 0,
        caller: cx.caller.clone(),
        limits: cx.limits.clone(),
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

/// Model name → deployment: aliases, and the virtual tiered model (whose choice is then the
/// model name echoed to the client, explained in `route_note`; a tier that serves only queued
/// work refuses an interactive request).
fn resolve(
    st: &AppState,
    cx: &RequestCx,
    endpoint: Endpoint,
    model: &RequestedModel,
    input: &Input,
    prompt_tokens: u32,
    max_tokens: Option<u32>,
) -> Result<(Arc<Deployment>, RequestedModel, Option<String>), ApiError> {
    if let Some(t) = st.tiers.as_ref().filter(|t| t.model == model.as_str()) {
        let header = cx.hints.tier()?;
        let caller = cx.caller.as_deref();
        let (name, decision) = t.decide(&tiers::Request { input, prompt_tokens, max_tokens, header, caller });
        if t.background_only(decision.tier) && !cx.background {
            return Err(background_required(endpoint, model, &decision));
        }
        let d = st.registry.resolve(name).cloned().ok_or_else(|| GatewayError::ModelNotFound(name.to_owned()))?;
        return Ok((d, RequestedModel::new(name), Some(decision.to_string())));
    }
    let d = st.registry.resolve(model).cloned().ok_or_else(|| GatewayError::ModelNotFound(model.to_string()))?;
    Ok((d, model.clone(), None))
}

/// The tier chosen serves only queued work: where to send the request instead. A Responses
/// request is pointed at its own `background` field; any other endpoint at a background
/// response or a batch line.
fn background_required(endpoint: Endpoint, model: &RequestedModel, decision: &Decision) -> ApiError {
    let how = match endpoint {
        Endpoint::Responses => "send it again with \"background\": true and poll GET /v1/responses/{id}",
        _ => "send it to POST /v1/responses with \"background\": true, or as a line of a batch (POST /v1/batches)",
    };
    let message = format!(
        "Model '{model}' routed this request to the {} tier ({decision}), which this gateway serves only in \
         the background: {how}",
        decision.tier.as_str()
    );
    let param = if endpoint == Endpoint::Responses { "background" } else { "model" };
    ApiError { param: Some(param.into()), ..ApiError::new(ErrorCode::BackgroundRequired, message) }
}
