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
//! - Authenticated requests to inference endpoints get their usage-ledger slot here; the guard
//!   writes the row of any such request that the pipeline did not settle (rejected after auth,
//!   or dropped before reaching a backend), so every one leaves exactly one row.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferrogate_core::tenancy::{EndpointGroup, KeyStatus, parse_key};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorLog};
use crate::observability::dashboard::{DASHBOARD, DASHBOARD_EVENTS, METRICS};
use crate::pipeline::Endpoint;
use crate::state::AppState;
use crate::telemetry::RequestCx;
use crate::tenancy::cache::Rejected;
use crate::tenancy::failures::FailureLimiter;
use crate::tenancy::{Caller, Principal, RequestMeter, Tenancy};

/// Paths reachable without a key: probes, and the admin API's description (no data in it).
pub const PUBLIC_PATHS: &[&str] = &["/health", "/ready", "/admin/v1/openapi.json"];

const MISSING_KEY: &str = "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.";

/// Failed static-key attempts allowed per minute and address when tenancy is off (with tenancy,
/// `tenancy.auth_failures_per_minute` counts them with the stored keys').
pub const STATIC_KEY_FAILURES_PER_MINUTE: u32 = 10;

pub struct StaticKeys {
    digests: Vec<[u8; 32]>,
    /// Wrong keys per address, when tenancy is off.
    failures: FailureLimiter,
}

impl StaticKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k)).collect(),
            failures: FailureLimiter::new(STATIC_KEY_FAILURES_PER_MINUTE),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Constant time in the key's content; every stored digest is compared.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        self.digests.iter().fold(false, |ok, k| ok | bool::from(k.ct_eq(&d)))
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The endpoint group a route belongs to, for key scopes.
fn endpoint_group(path: &str) -> Option<EndpointGroup> {
    match path {
        "/v1/usage" => Some(EndpointGroup::UsageRead),
        "/v1/models" => Some(EndpointGroup::Inference),
        p if p.starts_with("/v1/models/") || Endpoint::from_path(p).is_some() => Some(EndpointGroup::Inference),
        _ => None,
    }
}

/// The client's address: the peer, or `X-Forwarded-For` from a trusted proxy (`limits::client_ip`).
fn client_ip(st: &AppState, req: &Request) -> IpAddr {
    crate::limits::client_ip::client_ip(req, &st.limits.trusted_proxies)
}

pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !st.auth_required() || PUBLIC_PATHS.contains(&path) || public_observability(&st, path) {
        return next.run(req).await;
    }
    let tenancy = st.tenancy.as_deref();
    // The dashboard's data stream and the metrics are for operators: the master key, as the
    // admin API (they show every tenant's traffic).
    let operator = path == DASHBOARD_EVENTS || path == METRICS;
    let admin = tenancy.is_some() && (path == "/admin" || path.starts_with("/admin/") || operator);
    let group = endpoint_group(path);
    let endpoint = Endpoint::from_path(path).map(Endpoint::ledger_name);
    let ip = client_ip(&st, &req);
    let Some(presented) = presented_key(req.headers()) else {
        return ApiError::unauthorized(MISSING_KEY).into_response();
    };
    let principal = match (admin, tenancy) {
        (true, Some(t)) => match master(t, presented, ip) {
            Ok(()) => return next.run(req).await,
            Err(e) => return e.into_response(),
        },
        _ => match client(&st, tenancy, presented, ip).await {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        },
    };
    if let (Some(group), Principal::Key(k)) = (group, &principal)
        && !k.key.scopes.allows(group)
    {
        let msg = format!("This API key may not call '{}' endpoints", group.as_str());
        return ApiError::permission_denied("endpoint_not_allowed", None, msg).into_response();
    }
    let meter = tenancy.zip(endpoint).map(|(t, e)| RequestMeter::new(e, t.now_ms()));
    let caller = Arc::new(Caller { principal, meter });
    let Some(cx) = req.extensions_mut().get_mut::<RequestCx>() else {
        return ApiError::internal("no request context before auth").into_response();
    };
    cx.caller = Some(Arc::clone(&caller));
    cx.obs.authenticated(&caller);
    let Some(t) = st.tenancy.clone().filter(|_| caller.meter.is_some()) else {
        return next.run(req).await;
    };
    let mut guard = UnsettledRow { tenancy: t, caller, request_id: cx.id.clone(), response: None };
    let res = next.run(req).await;
    let code = res.extensions().get::<ErrorLog>().map(|e| e.code);
    guard.response = Some((res.status().as_u16(), code));
    res
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

/// Writes the usage row of a metered request nobody settled: rejected after auth (400, 403, 404,
/// 413, 429, 503 …), or dropped before reaching a backend (client gone: 499; handler panic: 500).
struct UnsettledRow {
    tenancy: Arc<Tenancy>,
    caller: Arc<Caller>,
    request_id: String,
    /// Status and error code of the response, once there is one.
    response: Option<(u16, Option<&'static str>)>,
}

impl Drop for UnsettledRow {
    fn drop(&mut self) {
        let Some(meter) = self.caller.meter.as_ref().filter(|m| m.take()) else { return };
        let (status, code, cancelled) = match self.response {
            Some((status, code)) => (status, code, false),
            None if std::thread::panicking() => (500, Some("internal_error"), false),
            None => (499, None, true),
        };
        let row = meter.rejected_row(&self.caller.principal, &self.request_id, status, code, cancelled);
        self.tenancy.ledger.record(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for p in ["/v1/chat/completions", "/v1/completions", "/generate", "/stream", "/v1/models", "/v1/models/x"] {
            assert_eq!(endpoint_group(p), Some(EndpointGroup::Inference), "{p}");
        }
        assert_eq!(endpoint_group("/admin/v1/keys"), None);
    }
}
