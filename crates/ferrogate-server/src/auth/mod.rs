//! Who is calling: `Authorization: Bearer <key>` or `x-api-key: <key>` → a `Principal` in the
//! request's `RequestCx`, or 401/403/429 before any handler runs.
//!
//! - Static keys (`server.api_keys`, the single-tenant case) are kept as SHA-256 digests and
//!   compared in constant time.
//! - Stored keys (tenancy on) are looked up by digest through the in-memory `KeyCache`; a cache
//!   miss is the only database round trip, and misses are rate-limited per client IP (failed
//!   attempts → 429 before any lookup).
//! - `/admin/v1` accepts only the master key; every other route only client keys.
//! - Auth is required on every route but [`PUBLIC_PATHS`] once any static key, master key or key
//!   database is configured. A stored key must hold the endpoint group of the route (403).
//! - Authenticated requests to inference endpoints get their usage-ledger slot here; whoever
//!   records the request takes it (`settle`), so every one leaves exactly one row.

pub mod keys;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use ferrogate_core::tenancy::{EndpointGroup, KeyStatus, parse_key};

pub use self::keys::{STATIC_KEY_FAILURES_PER_MINUTE, StaticKeys, presented_key};
use crate::error::{ApiError, ErrorCode};
use crate::handlers::dashboard::{DASHBOARD, DASHBOARD_EVENTS, METRICS};
use crate::request::caller::{Caller, Principal, RequestMeter};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;
use crate::tenancy::Tenancy;
use crate::tenancy::cache::Rejected;
use crate::tenancy::failures::FailureLimiter;

/// Paths reachable without a key: probes, and the admin API's description (no data in it).
pub const PUBLIC_PATHS: &[&str] = &["/health", "/ready", "/admin/v1/openapi.json"];

const MISSING_KEY: &str = "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.";

/// The endpoint group a route belongs to, for key scopes.
fn endpoint_group(path: &str) -> Option<EndpointGroup> {
    match path {
        "/v1/usage" => Some(EndpointGroup::UsageRead),
        "/v1/models" | "/v1/messages/count_tokens" => Some(EndpointGroup::Inference),
        // Ollama's API: inference and its model listings alike.
        p if p.starts_with("/api/") => Some(EndpointGroup::Inference),
        // The Responses and Conversations APIs' stored state belongs with inference.
        p if p.starts_with("/v1/responses/") || p == "/v1/conversations" || p.starts_with("/v1/conversations/") => {
            Some(EndpointGroup::Inference)
        }
        p if p.starts_with("/v1/models/") || Endpoint::from_path(p).is_some() => Some(EndpointGroup::Inference),
        _ => None,
    }
}

/// The client's address: the peer, or `X-Forwarded-For` from a trusted proxy (`limits::client_ip`).
fn client_ip(st: &AppState, req: &Request) -> IpAddr {
    crate::limits::client_ip::client_ip(req, &st.limits.trusted_proxies)
}

/// Who is calling, into the request's context; `Err` is the refusal to send (401, 403, 429).
/// Part of the entry stage (`crate::entry`).
pub async fn admit(st: &AppState, req: &mut Request) -> Result<(), Response> {
    let path = req.uri().path();
    if !st.auth_required() || PUBLIC_PATHS.contains(&path) || public_observability(st, path) {
        return Ok(());
    }
    let tenancy = st.tenancy.as_deref();
    // The dashboard's data stream and the metrics are for operators: the master key, as the
    // admin API (they show every tenant's traffic).
    let operator = path == DASHBOARD_EVENTS || path == METRICS;
    let admin = tenancy.is_some() && (path == "/admin" || path.starts_with("/admin/") || operator);
    let group = endpoint_group(path);
    let endpoint = Endpoint::from_path(path).map(Endpoint::ledger_name);
    let ip = client_ip(st, req);
    let Some(presented) = presented_key(req.headers()) else {
        return Err(ApiError::unauthorized(MISSING_KEY).into_response());
    };
    let principal = match (admin, tenancy) {
        (true, Some(t)) => return master(t, presented, ip).map_err(IntoResponse::into_response),
        _ => client(st, tenancy, presented, ip).await.map_err(IntoResponse::into_response)?,
    };
    if let (Some(group), Principal::Key(k)) = (group, &principal)
        && !k.key.scopes.allows(group)
    {
        let msg = format!("This API key may not call '{}' endpoints", group.as_str());
        return Err(ApiError::permission_denied(ErrorCode::EndpointNotAllowed, None, msg).into_response());
    }
    let meter = tenancy.zip(endpoint).map(|(t, e)| RequestMeter::new(e, t.now_ms()));
    let caller = Arc::new(Caller { principal, meter });
    let Some(cx) = req.extensions_mut().get_mut::<RequestCx>() else {
        return Err(ApiError::internal("no request context before auth").into_response());
    };
    cx.caller = Some(Arc::clone(&caller));
    cx.obs.authenticated(&caller);
    Ok(())
}

/// The dashboard page (no data in it) and, with `metrics.public = true`, `/metrics`.
fn public_observability(st: &AppState, path: &str) -> bool {
    path == DASHBOARD || (path == METRICS && st.obs.cfg.metrics.public)
}

/// Whether the request comes from an operator, who may see `/ready`'s details (upstream error
/// texts, file paths, breaker and queue state): anyone when auth is off (an open gateway hides
/// nothing), else the master key with tenancy, a static key without. A wrong key counts as a
/// failed attempt, so the difference is no brute-force oracle.
pub fn is_operator(st: &AppState, req: &Request) -> bool {
    if !st.auth_required() {
        return true;
    }
    let Some(presented) = presented_key(req.headers()) else { return false };
    match st.tenancy.as_deref() {
        Some(t) => master(t, presented, client_ip(st, req)).is_ok(),
        None if st.keys.accepts(presented) => true,
        None => {
            let _counted = static_key_refused(&st.keys.failures, client_ip(st, req));
            false
        }
    }
}

/// The master key, for `/admin/v1`.
fn master(t: &Tenancy, presented: &str, ip: IpAddr) -> Result<(), ApiError> {
    let now = t.now_ms();
    if let Some(wait) = t.failures.admin.blocked(ip, now) {
        return Err(ApiError::too_many_auth_failures(Duration::from_millis(wait.unsigned_abs())));
    }
    if t.is_master(presented) {
        return Ok(());
    }
    t.failures.admin.record(ip, now);
    Err(ApiError::unauthorized(if t.has_master() {
        "The admin API needs the master key."
    } else {
        "The admin API is off on this instance: no master key is configured."
    }))
}

/// A client key: static, or stored (cache first; the limiter and the store only on a miss).
async fn client(st: &AppState, t: Option<&Tenancy>, presented: &str, ip: IpAddr) -> Result<Principal, ApiError> {
    if st.keys.accepts(presented) {
        return Ok(Principal::Static);
    }
    let Some(t) = t else { return static_key_refused(&st.keys.failures, ip) };
    let now = t.now_ms();
    if let Ok(parsed) = parse_key(presented)
        && let Ok(Some(hit)) = t.keys.cached(&parsed.digest())
        && hit.key.status(now) == KeyStatus::Active
    {
        return Ok(Principal::Key(hit));
    }
    if let Some(wait) = t.failures.clients.blocked(ip, now) {
        return Err(ApiError::too_many_auth_failures(Duration::from_millis(wait.unsigned_abs())));
    }
    let message = match t.keys.authenticate(presented, now).await {
        Ok(found) => return Ok(Principal::Key(found)),
        Err(Rejected::Unavailable(e)) => return Err(e.into()),
        Err(Rejected::Malformed | Rejected::Unknown) => "Incorrect API key provided.",
        Err(Rejected::Revoked) => "This API key has been revoked.",
        Err(Rejected::Expired) => "This API key has expired.",
    };
    t.failures.clients.record(ip, now);
    Err(ApiError::unauthorized(message))
}

/// A wrong key where only static keys exist: counted per address like stored keys', 429 once
/// the minute's attempts are used up (issue 17: static keys could be guessed without bound).
fn static_key_refused(failures: &FailureLimiter, ip: IpAddr) -> Result<Principal, ApiError> {
    let now = ferrogate_core::tenancy::time::now_ms();
    if let Some(wait) = failures.blocked(ip, now) {
        return Err(ApiError::too_many_auth_failures(Duration::from_millis(wait.unsigned_abs())));
    }
    failures.record(ip, now);
    Err(ApiError::unauthorized("Incorrect API key provided."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = StaticKeys::new(&["sk-test-1234".into(), "sk-other-5678".into()]);
        assert!(keys.accepts("sk-test-1234"));
        assert!(keys.accepts("sk-other-5678"));
        assert!(!keys.accepts("sk-test-123"));
        assert!(!keys.accepts(""));
    }

    #[test]
    fn reads_bearer_and_x_api_key() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_key(&h), Some("k2"));
    }

    #[test]
    fn routes_map_to_endpoint_groups() {
        assert_eq!(endpoint_group("/v1/usage"), Some(EndpointGroup::UsageRead));
        for p in [
            "/v1/chat/completions",
            "/v1/completions",
            "/generate",
            "/stream",
            "/v1/models",
            "/v1/models/x",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/api/chat",
            "/api/generate",
            "/api/tags",
            "/api/show",
            "/v1/responses",
            "/v1/responses/resp_1/input_items",
            "/v1/conversations",
            "/v1/conversations/conv_1/items",
        ] {
            assert_eq!(endpoint_group(p), Some(EndpointGroup::Inference), "{p}");
        }
        assert_eq!(endpoint_group("/admin/v1/keys"), None);
    }
}
