//! Thin HTTP handlers: decode, call the pipeline, encode. No business logic here.

pub mod anthropic;
pub mod background;
pub mod batches;
pub mod chat;
pub mod completions;
pub mod conversations;
pub mod dashboard;
pub mod embeddings;
pub mod encode;
pub mod files;
pub mod health;
pub mod models;
pub mod ollama;
pub mod responses;
pub mod simple;
mod wording;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderValue;
use axum::response::Response;
use serde::de::DeserializeOwned;

use ferrogate_core::{Deployment, GatewayError, ModelState};

use crate::error::ApiError;
use crate::request::{RequestCx, RouteLog};
use crate::settle::Settle;
use crate::state::AppState;

/// Reads a JSON body into `T`; a failure names the offending field (`messages[0].role`).
pub fn decode<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(limit)
        } else {
            ApiError::invalid(None, format!("Could not read the request body: {}", e.body_text()))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::invalid(None, "The request body is empty; expected a JSON object"));
    }
    // Fast path: plain serde. Only a body that fails is decoded again with path tracking, so
    // valid requests do not pay for it.
    let first_err = match serde_json::from_slice::<T>(&body) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let de = &mut serde_json::Deserializer::from_slice(&body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Err(e) => Err(described(e)),
        // Only whole-document checks (trailing characters) fail plain serde but not this.
        Ok(_) => Err(ApiError::invalid(None, format!("We could not parse the JSON body of your request: {first_err}"))),
    }
}

/// A decoding error as a 400 naming the offending field.
fn described(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let param = (path != "." && !path.is_empty()).then_some(path);
    if inner.is_syntax() || inner.is_eof() {
        let message = format!("We could not parse the JSON body of your request: {inner}");
        return ApiError::invalid(param, message);
    }
    let message = wording::explain(param.as_deref(), &inner.to_string());
    ApiError::invalid(missing_field_param(param, &inner), message)
}

/// A missing field is named by its full path (`messages[0].role`), like OpenAI's `param`.
fn missing_field_param(param: Option<String>, inner: &serde_json::Error) -> Option<String> {
    let text = inner.to_string();
    let Some(field) = text.strip_prefix("missing field `").and_then(|r| r.split_once('`')).map(|(f, _)| f) else {
        return param;
    };
    Some(match param {
        Some(p) => format!("{p}.{field}"),
        None => field.to_owned(),
    })
}

/// The deployment `name` routes to (a deployment, an alias, or the tiered model's small tier),
/// if the caller may use it: 404 `model_not_found` or 403 otherwise.
/// Whether a deployment's model is in memory, as its backends say (loaded if any has it);
/// `None` when none says (HTTP upstreams).
pub fn model_state(d: &Deployment) -> Option<ModelState> {
    ModelState::of_any(d.targets.iter().map(|t| t.backend.model_state()))
}

pub fn resolve_model<'a>(st: &'a AppState, cx: &RequestCx, name: &str) -> Result<&'a Deployment, ApiError> {
    let tiered = st.tiers.as_ref().filter(|t| t.model == name).map(|t| t.small());
    let d = st.registry.resolve(tiered.unwrap_or(name)).ok_or_else(|| GatewayError::ModelNotFound(name.to_owned()))?;
    if let Some(c) = &cx.caller {
        c.check_model(d, name)?;
    }
    Ok(d)
}

/// What the client learns about routing: the access log's model and backend
/// (`x-ferrogate-backend`, and why it was picked in `x-ferrogate-backend-route`),
/// `x-ferrogate-fallback: from->to` when a fallback served, `x-ferrogate-route` when the tiered
/// model decided, `x-ferrogate-guardrails` when a guardrail flagged the request,
/// `x-ferrogate-cache: hit|semantic-hit|miss` for a cacheable request and
/// `x-ferrogate-cache-similarity` for a semantic hit.
pub fn decorate(res: &mut Response, shown: &str, s: &Settle) {
    let h = res.headers_mut();
    if let Some(from) = &s.fallback_from
        && let Ok(v) = HeaderValue::from_str(&format!("{from}->{}", s.deployment))
    {
        h.insert("x-ferrogate-fallback", v);
    }
    if let Some(v) = s.route_note.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-ferrogate-route", v);
    }
    if let Some(v) = s.guardrails.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-ferrogate-guardrails", v);
    }
    if let Some(c) = s.cache {
        h.insert("x-ferrogate-cache", HeaderValue::from_static(c));
    }
    if let Some(v) = s.similarity.and_then(|x| HeaderValue::from_str(&format!("{x:.4}")).ok()) {
        h.insert("x-ferrogate-cache-similarity", v);
    }
    res.extensions_mut().insert(RouteLog {
        model: shown.to_owned(),
        backend: s.backend.clone(),
        backend_route: s.backend_route,
    });
}
