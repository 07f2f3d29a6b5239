//! Request identity and the access log: accepts or generates `X-Request-Id`, puts a `RequestCx`
//! in the request extensions, adds `X-Request-Id` and `X-Response-Time-Ms` to every response and
//! writes one structured log line per request (never prompt text or keys). It also starts the
//! request's observability context (`ObsCx`: its trace, when tracing is on) and records the
//! metrics of inference requests that never reached a backend (404, 429, …); those that did are
//! recorded by `Settle`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ErrorLog;
use crate::observability::ObsCx;
use crate::observability::feed::{self, Entry};
use crate::observability::metrics::RequestRecord;
use crate::state::AppState;

/// Per-request context handlers read from the extensions.
#[derive(Debug, Clone)]
pub struct RequestCx {
    pub id: String,
    pub started: Instant,
    /// The peer, or `X-Forwarded-For` behind a trusted proxy: the access log's `client_ip`.
    pub client_ip: std::net::IpAddr,
    /// Set by the auth layer: who is calling, and the request's usage-ledger slot.
    pub caller: Option<std::sync::Arc<crate::tenancy::Caller>>,
    /// Set by the limits layer when rate limits may apply: client IP, rate-limit headers.
    pub limits: Option<std::sync::Arc<crate::limits::RequestLimits>>,
    /// The client's routing headers (priority class, tier pin), parsed by the route stage.
    pub hints: crate::resilience::hints::RouteHints,
    /// Stage marks, deployment and trace of this request (metrics, spans).
    pub obs: Arc<ObsCx>,
}

/// Filled by handlers so the access log can name the model and backend; the backend is also
/// returned to the client in `x-ferrogate-backend` when `server.backend_header` is on.
#[derive(Debug, Clone, Default)]
pub struct RouteLog {
    pub model: String,
    pub backend: String,
}

/// A client-supplied id is kept if it is short and printable; otherwise a new one is made.
fn request_id(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned)
}

pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let hints = crate::resilience::hints::RouteHints::from_headers(req.headers());
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let endpoint = crate::pipeline::Endpoint::from_path(&path).map(crate::pipeline::Endpoint::as_str);
    let obs = Arc::new(st.obs.request(req.headers(), method.as_str(), &path, started, endpoint.is_some()));
    let client_ip = crate::limits::client_ip::client_ip(&req, &st.limits.trusted_proxies);
    let cx = RequestCx { id: request_id(&req), started, client_ip, caller: None, limits: None, hints, obs };
    req.extensions_mut().insert(cx.clone());
    let mut res = next.run(req).await;
    let elapsed = cx.started.elapsed();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cx.id) {
        headers.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", elapsed.as_secs_f64() * 1000.0)) {
        headers.insert("x-response-time-ms", v);
    }
    let route = res.extensions_mut().remove::<RouteLog>().unwrap_or_default();
    // A request refused after routing (429, 503 queue_full) names its deployment.
    let model = match route.model.as_str() {
        "" => cx.obs.deployment.get().map_or("", String::as_str),
        m => m,
    };
    if let Ok(v) = HeaderValue::from_str(&route.backend)
        && st.backend_header
        && !route.backend.is_empty()
    {
        res.headers_mut().insert("x-ferrogate-backend", v);
    }
    let status = res.status().as_u16();
    let code = res.extensions().get::<ErrorLog>().map(|e| e.code);
    if let Some(ep) = endpoint {
        record_unsettled(&st, &cx, ep, status, code);
    }
    let trace_id = cx.obs.trace_id();
    match res.extensions().get::<ErrorLog>() {
        Some(e) if status >= 500 && !e.is_load_shed() => tracing::warn!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code, error.cause = %e.cause, trace_id, "request failed"
        ),
        Some(e) => tracing::info!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code, error.cause = %e.cause, trace_id, "request rejected"
        ),
        None => tracing::debug!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, trace_id, "response headers sent"
        ),
    }
    res
}

/// Status on the root span; metrics and the dashboard feed for an inference request that no
/// `Settle` records (rejected before reaching a backend).
fn record_unsettled(st: &AppState, cx: &RequestCx, endpoint: &'static str, status: u16, code: Option<&'static str>) {
    if let Some(t) = cx.obs.sampled() {
        t.set([opentelemetry::KeyValue::new("http.response.status_code", i64::from(status))]);
        if let Some(c) = code.filter(|_| status >= 400) {
            t.error(c);
        }
    }
    if cx.obs.settling.load(Ordering::Relaxed) {
        return;
    }
    let error_type = code.unwrap_or(if status >= 400 { "error" } else { "none" });
    let tenant = cx.obs.tenant();
    let duration = cx.started.elapsed();
    let r = RequestRecord {
        endpoint,
        deployment: cx.obs.deployment(),
        backend: None,
        status,
        error_type,
        tenant,
        duration,
        ttft: None,
        backend_duration: None,
        decode: None,
        prompt_tokens: 0,
        cached_tokens: 0,
        completion_tokens: 0,
        has_usage: false,
    };
    if st.obs.cfg.metrics.enabled {
        st.obs.metrics.request(&r);
    }
    if !st.obs.cfg.dashboard.enabled {
        return;
    }
    st.obs.feed.push(Entry {
        at_ms: feed::now_ms(),
        request_id: cx.id.clone(),
        endpoint,
        deployment: r.deployment.to_owned(),
        backend: None,
        status,
        error_type,
        latency_ms: duration.as_secs_f64() * 1000.0,
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        tenant: tenant.map(str::to_owned),
    });
}
