//! Request identity and the access log: accepts or generates `X-Request-Id`, puts a `RequestCx`
//! in the request extensions, adds `X-Request-Id` and `X-Response-Time-Ms` to every response and
//! writes one structured log line per request (never prompt text or keys).

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ErrorLog;

/// Per-request context handlers read from the extensions.
#[derive(Debug, Clone)]
pub struct RequestCx {
    pub id: String,
    pub started: Instant,
    /// Set by the auth layer: who is calling, and the request's usage-ledger slot.
    pub caller: Option<std::sync::Arc<crate::tenancy::Caller>>,
    /// Set by the limits layer when rate limits may apply: client IP, rate-limit headers.
    pub limits: Option<std::sync::Arc<crate::limits::RequestLimits>>,
    /// The client's routing headers (priority class, tier pin), parsed by the route stage.
    pub hints: crate::resilience::hints::RouteHints,
}

/// Filled by handlers so the access log can name the model and backend; the backend is also
/// returned to the client in `x-ferrogate-backend`.
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

pub async fn layer(mut req: Request, next: Next) -> Response {
    let hints = crate::resilience::hints::RouteHints::from_headers(req.headers());
    let cx = RequestCx { id: request_id(&req), started: Instant::now(), caller: None, limits: None, hints };
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
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
    let route = res.extensions().get::<RouteLog>().cloned().unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&route.backend)
        && !route.backend.is_empty()
    {
        res.headers_mut().insert("x-ferrogate-backend", v);
    }
    let status = res.status().as_u16();
    match res.extensions().get::<ErrorLog>() {
        Some(e) if status >= 500 => tracing::warn!(
            request_id = %cx.id, %method, %path, status, model = %route.model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code, error.cause = %e.cause, "request failed"
        ),
        Some(e) => tracing::info!(
            request_id = %cx.id, %method, %path, status, model = %route.model,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code, error.cause = %e.cause, "request rejected"
        ),
        None => tracing::debug!(
            request_id = %cx.id, %method, %path, status, model = %route.model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, "response headers sent"
        ),
    }
    res
}
