//! The access layer (the outermost): request identity and the access log — accepts or generates `X-Request-Id`, puts a `RequestCx`
//! in the request extensions, adds `X-Request-Id` and `X-Response-Time-Ms` to every response and
//! writes one structured log line per request (never prompt text or keys). It also starts the
//! request's observability context (`ObsCx`: its trace, when tracing is on) and records, through
//! the one settle path (`settle::emit`), every inference request that no `Settle` records —
//! refused before reaching a backend (400, 401, 404, 429, 503 …), or dropped before its response
//! (client gone: 499; a handler panic: 500).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ferrogate_core::cache::CacheControl;

use crate::error::{ErrorCode, ErrorLog};
use crate::request::record::{Charged, Outcome, RequestRecord};
use crate::request::{Endpoint, RequestCx, RouteLog};
use crate::resilience::hints::RouteHints;
use crate::settle;
use crate::state::AppState;

/// A client-supplied id is kept if it is short and printable; otherwise a new one is made.
fn request_id(req: &Request) -> Arc<str> {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
    match given {
        Some(id) => Arc::from(id),
        None => Arc::from(&*uuid::Uuid::now_v7().simple().encode_lower(&mut uuid::Uuid::encode_buffer())),
    }
}

pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let hints = RouteHints::from_headers(req.headers());
    // The URI shares the request head's bytes: cloning it copies no text.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let path = uri.path();
    let endpoint = Endpoint::from_path(path);
    let obs = Arc::new(st.obs.request(req.headers(), method.as_str(), path, started, endpoint.is_some()));
    let client_ip = crate::limits::client_ip::client_ip(&req, &st.limits.trusted_proxies);
    let cache_control =
        CacheControl::parse(req.headers().get_all("cache-control").iter().filter_map(|v| v.to_str().ok()));
    let cx = RequestCx {
        id: request_id(&req),
        started,
        endpoint,
        client_ip,
        caller: None,
        limits: None,
        hints,
        background: false,
        cache_control,
        obs,
    };
    req.extensions_mut().insert(cx.clone());
    let mut unsettled = endpoint.map(|e| Unsettled::new(st.clone(), cx.clone(), e));
    let res = next.run(req).await;
    // Errors in the route's protocol shape (Anthropic, Ollama), before anything reads them.
    let mut res = crate::error::front::reshape(path, &cx.id, res);
    let elapsed = cx.started.elapsed();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&cx.id) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = millis_header(elapsed) {
        headers.insert("x-response-time-ms", v);
    }
    let route = res.extensions_mut().remove::<RouteLog>().unwrap_or_default();
    // A request refused after routing (429, 503 queue_full) names its deployment.
    let model = match route.model.as_str() {
        "" => cx.obs.deployment.get().map_or("", String::as_str),
        m => m,
    };
    if st.settings.backend_header
        && !route.backend.as_str().is_empty()
        && let Ok(v) = HeaderValue::from_str(route.backend.as_str())
    {
        res.headers_mut().insert("x-ferrogate-backend", v);
        if let Some(why) = route.backend_route {
            let (reason, matched) = (why.reason.as_str(), why.matched);
            let line = format!("backend={}; reason={reason}; match={matched:.2}", route.backend.as_str());
            if let Ok(v) = HeaderValue::from_str(&line) {
                res.headers_mut().insert("x-ferrogate-backend-route", v);
            }
        }
    }
    let status = res.status().as_u16();
    let error = res.extensions().get::<ErrorLog>();
    root_span_status(&cx, status, error.map(|e| e.code));
    if let Some(u) = unsettled.as_mut() {
        u.finish(status, error);
        return res;
    }
    let trace_id = cx.obs.trace_id();
    match error {
        Some(e) if status >= 500 && !e.is_load_shed() => tracing::warn!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code.as_str(), error.cause = %e.cause, trace_id, "request failed"
        ),
        Some(e) => tracing::info!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model,
            latency_ms = elapsed.as_millis() as u64, error.code = e.code.as_str(), error.cause = %e.cause, trace_id, "request rejected"
        ),
        None => tracing::debug!(
            request_id = %cx.id, client_ip = %cx.client_ip, %method, %path, status, model = %model, backend = %route.backend,
            latency_ms = elapsed.as_millis() as u64, trace_id, "response headers sent"
        ),
    }
    res
}

/// `elapsed` in milliseconds with three decimals (to the nearest microsecond), written digit by
/// digit on the stack: no `String`, no `fmt` (whose machinery cost ~550 instructions a request).
fn millis_header(elapsed: std::time::Duration) -> Option<HeaderValue> {
    let micros = u64::try_from((elapsed.as_nanos() + 500) / 1000).unwrap_or(u64::MAX);
    // Written from the end: three decimals, the point, then the whole milliseconds (at most 17
    // digits of a u64 divided by 1,000).
    let mut buf = [0u8; 24];
    let mut at = buf.len();
    let mut rest = micros;
    for place in 0..32 {
        at = at.checked_sub(1)?;
        *buf.get_mut(at)? = if place == 3 { b'.' } else { b'0' + (rest % 10) as u8 };
        if place != 3 {
            rest /= 10;
        }
        if place >= 4 && rest == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(buf.get(at..)?).ok()
}

/// The HTTP status on the root span (and its error, if any).
fn root_span_status(cx: &RequestCx, status: u16, code: Option<ErrorCode>) {
    if let Some(t) = cx.obs.sampled() {
        t.set([opentelemetry::KeyValue::new("http.response.status_code", i64::from(status))]);
        if let Some(c) = code.filter(|_| status >= 400) {
            t.error(c.as_str());
        }
    }
}

/// An inference request not yet recorded. Unless a `Settle` took over (it reached a backend),
/// it is recorded when its response leaves ([`Unsettled::finish`]) or, if it never gets one,
/// when dropped: 499 when the client went away, 500 when a handler panicked. Also used by the
/// job runner, whose batch lines do not pass through this layer.
pub(crate) struct Unsettled {
    st: AppState,
    cx: RequestCx,
    endpoint: Endpoint,
    done: bool,
}

impl Unsettled {
    /// The record-of-last-resort of the request `cx` made to `endpoint`.
    pub(crate) fn new(st: AppState, cx: RequestCx, endpoint: Endpoint) -> Self {
        Self { st, cx, endpoint, done: false }
    }

    /// Records the request with its response's `status` and error, unless a `Settle` did.
    pub(crate) fn finish(&mut self, status: u16, error: Option<&ErrorLog>) {
        if std::mem::replace(&mut self.done, true) || self.cx.obs.settling.load(Ordering::Relaxed) {
            return;
        }
        let outcome = match error {
            Some(e) => Outcome::Refused { code: e.code, cause: e.cause.clone() },
            // A success no backend produced: the gateway answered itself.
            None if status < 400 => Outcome::Answered,
            None => Outcome::Refused { code: ErrorCode::InvalidRequest, cause: String::new() },
        };
        self.record(status, &outcome);
    }

    fn record(&self, status: u16, outcome: &Outcome) {
        let obs = &self.cx.obs;
        let caller = obs.caller();
        let requested = caller.and_then(|c| c.meter.as_ref()).map_or("", |m| m.model());
        let r = RequestRecord {
            request_id: &self.cx.id,
            endpoint: self.endpoint,
            client_ip: self.cx.client_ip,
            caller: caller.map(|c| c.as_ref()),
            tenant: obs.tenant(),
            requested,
            deployment: obs.deployment(),
            backend: None,
            model_served: None,
            stream: false,
            outcome,
            status,
            usage: Default::default(),
            charged: Charged::default(),
            dispatched: false,
            started: self.cx.started,
            duration: self.cx.started.elapsed(),
            ttft: None,
            backend_duration: None,
            decode: None,
            guardrails: None,
            cache_hit: false,
        };
        let metered = caller.and_then(|c| c.meter.as_ref()).is_some_and(|m| m.take());
        settle::emit(&self.st, &r, metered, obs.trace_id().as_deref());
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if self.done || self.cx.obs.settling.load(Ordering::Relaxed) {
            return;
        }
        self.done = true;
        let outcome = if std::thread::panicking() {
            Outcome::Refused { code: ErrorCode::InternalError, cause: "handler panicked".into() }
        } else {
            Outcome::Cancelled
        };
        let status = if std::thread::panicking() { 500 } else { 499 };
        self.record(status, &outcome);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::millis_header;

    #[test]
    fn response_time_is_milliseconds_with_three_decimals_rounded() {
        let ms = |d: Duration| millis_header(d).unwrap().to_str().unwrap().to_owned();
        assert_eq!(ms(Duration::ZERO), "0.000");
        assert_eq!(ms(Duration::from_nanos(1_234_567)), "1.235");
        assert_eq!(ms(Duration::from_nanos(1_234_499)), "1.234");
        assert_eq!(ms(Duration::from_micros(42)), "0.042");
        assert_eq!(ms(Duration::from_nanos(999_999_600)), "1000.000");
        assert_eq!(ms(Duration::from_secs(90_061)), "90061000.000");
        assert_eq!(ms(Duration::from_micros(1_000)), "1.000");
        assert_eq!(ms(Duration::from_micros(10_000_007)), "10000.007");
        // The longest: every digit of a u64 of microseconds.
        assert_eq!(ms(Duration::from_micros(u64::MAX)), format!("{}.{:03}", u64::MAX / 1000, u64::MAX % 1000));
        for micros in (0..5_000u64).chain([999_999, 1_000_000, 123_456_789]) {
            let expected = format!("{}.{:03}", micros / 1000, micros % 1000);
            assert_eq!(ms(Duration::from_micros(micros)), expected);
        }
    }
}
