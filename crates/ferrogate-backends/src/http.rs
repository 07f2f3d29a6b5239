//! HTTP plumbing shared by the HTTP adapters: one pooled keep-alive client per backend
//! (TCP_NODELAY, rustls, no proxy unless configured), bounded reads of upstream bodies, and the
//! mapping of transport and HTTP failures onto [`BackendError`].
//!
//! Invariant: an upstream error body reaches a `BackendError` only as an extracted message of at
//! most [`MAX_MESSAGE_CHARS`] characters, never raw; the API key header is marked sensitive.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use ferrogate_core::{BackendError, TimeoutKind};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// Longest upstream message kept in an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 500;
/// Most bytes of an error body read to find its message.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Most bytes of a whole (non-streamed) answer.
pub(crate) const RESPONSE_BODY_CAP: usize = 32 * 1024 * 1024;
/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes find dead peers of long idle streams.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// What a backend's HTTP client is built from.
pub(crate) struct ClientSettings<'a> {
    pub bearer: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub pool_idle_per_host: usize,
    pub proxy: Option<&'a str>,
    /// Extra roots (PEM) for a private CA.
    pub ca_file: Option<&'a std::path::Path>,
}

/// The pooled client. Requests carry no overall timeout here: callers bound each phase.
pub(crate) fn client(s: &ClientSettings<'_>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .default_headers(default_headers(s)?)
        .user_agent(concat!("ferrogate/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(s.connect_timeout)
        .pool_max_idle_per_host(s.pool_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(TCP_KEEPALIVE)
        .redirect(reqwest::redirect::Policy::none())
        .use_rustls_tls()
        .no_proxy();
    if let Some(p) = s.proxy {
        builder = builder.proxy(reqwest::Proxy::all(p).map_err(|e| format!("invalid proxy '{p}': {e}"))?);
    }
    if let Some(file) = s.ca_file {
        for cert in extra_roots(file)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The certificates of a PEM bundle (at least one).
pub(crate) fn extra_roots(file: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(file).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {} holds no PEM certificate", file.display()));
    }
    Ok(certs)
}

fn default_headers(s: &ClientSettings<'_>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in s.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name '{name}'"))?;
        let v = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header '{name}'"))?;
        map.insert(n, v);
    }
    if let Some(key) = s.bearer {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "the API key is not a valid header value".to_owned())?;
        v.set_sensitive(true);
        map.insert(header::AUTHORIZATION, v);
    }
    Ok(map)
}

/// `X-Request-Id: <id>`, skipped when the id is not a valid header value.
pub(crate) fn with_request_id(rb: reqwest::RequestBuilder, request_id: &str) -> reqwest::RequestBuilder {
    match HeaderValue::from_str(request_id) {
        Ok(v) if !request_id.is_empty() => rb.header("x-request-id", v),
        _ => rb,
    }
}

/// The request's W3C trace context (`traceparent`, `tracestate`), so the upstream's spans join the
/// gateway's trace; nothing when tracing is off.
pub(crate) fn with_trace(mut rb: reqwest::RequestBuilder, obs: &ferrogate_core::RequestObs) -> reqwest::RequestBuilder {
    for (name, value) in &obs.trace_headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            rb = rb.header(*name, v);
        }
    }
    rb
}

/// Sends `rb`; a non-2xx answer becomes the matching error (its body read, bounded).
pub(crate) async fn send(rb: reqwest::RequestBuilder) -> Result<reqwest::Response, BackendError> {
    let resp = rb.send().await.map_err(transport_error)?;
    if resp.status().is_success() { Ok(resp) } else { Err(status_error(resp).await) }
}

/// Reads a whole body, refusing more than `cap` bytes.
pub(crate) async fn read_body(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, BackendError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(BackendError::Protocol(format!("response body is larger than {cap} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `cap` bytes of a body; a broken body yields what arrived.
async fn read_prefix(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}

/// Runs `fut` within `limit`, or fails with a timeout of `kind`.
pub(crate) async fn within<T>(
    limit: Duration,
    kind: TimeoutKind,
    fut: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    tokio::time::timeout(limit, fut).await.unwrap_or(Err(BackendError::Timeout(kind)))
}

// === errors ===

/// A non-2xx upstream answer → `Status` (or `ContextLength`), with its message and Retry-After.
pub(crate) async fn status_error(resp: reqwest::Response) -> BackendError {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = read_prefix(resp, ERROR_BODY_CAP).await;
    let message =
        upstream_message(&body).unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    classify(status.as_u16(), message, retry_after)
}

/// Upstream-reported errors by status; a 400 about the context window is the caller's
/// `ContextLength` so clients get `context_length_exceeded`.
pub(crate) fn classify(status: u16, message: String, retry_after: Option<Duration>) -> BackendError {
    let lower = message.to_ascii_lowercase();
    if status == 400
        && (lower.contains("context length") || lower.contains("context window") || lower.contains("maximum context"))
    {
        return BackendError::ContextLength { message };
    }
    BackendError::Status { status, message, retry_after }
}

/// A reqwest failure → the variant that says which phase failed.
pub(crate) fn transport_error(e: reqwest::Error) -> BackendError {
    let (connect, timeout, body, request) =
        (e.is_connect(), e.is_timeout(), e.is_body() || e.is_decode(), e.is_request());
    let detail = error_chain(&e.without_url());
    if timeout && connect {
        BackendError::Timeout(TimeoutKind::Connect)
    } else if connect {
        BackendError::Connect(detail)
    } else if timeout {
        BackendError::Timeout(TimeoutKind::Total)
    } else if body {
        BackendError::Protocol(detail)
    } else if request {
        // Sent, but the connection closed before any response: the upstream crashed or dropped
        // it. Nothing reached the client, so another attempt is safe.
        BackendError::Connect(format!("upstream closed the connection without a response ({detail})"))
    } else {
        BackendError::Internal(detail)
    }
}

/// `e` and its sources joined by ": ", bounded.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    truncate(&parts.join(": "))
}

/// `Retry-After` in seconds (integer or decimal). HTTP dates are not understood (→ `None`).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = text.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// The human message of an OpenAI (`{"error":{"message"}}`), Ollama/TGI (`{"error": "…"}`),
/// vLLM/FastAPI (`{"message"}`, `{"detail"}`) or plain-text error body; HTML is ignored.
pub(crate) fn upstream_message(body: &[u8]) -> Option<String> {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(v) => json_message(&v)?,
        Err(_) => plain_text(body)?,
    };
    let flat: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    (!flat.is_empty()).then(|| truncate(flat))
}

pub(crate) fn json_message(v: &Value) -> Option<String> {
    let field = ["error", "message", "detail"].iter().find_map(|k| v.get(*k))?;
    match field {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => Some(Value::Object(o.clone()).to_string()),
        },
        other => Some(other.to_string()),
    }
}

fn plain_text(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    (!text.is_empty() && !text.starts_with('<')).then(|| text.to_owned())
}

/// At most [`MAX_MESSAGE_CHARS`] characters, cut on a character boundary.
pub(crate) fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_of_known_error_shapes() {
        let m = |s: &str| upstream_message(s.as_bytes());
        assert_eq!(m(r#"{"error":{"message":"bad key","type":"auth"}}"#).as_deref(), Some("bad key"));
        assert_eq!(m(r#"{"error":"model 'x' not found"}"#).as_deref(), Some("model 'x' not found"));
        assert_eq!(m(r#"{"object":"error","message":"too long"}"#).as_deref(), Some("too long"));
        assert!(m(r#"{"detail":[{"loc":["body"],"msg":"field required"}]}"#).unwrap().contains("field required"));
        assert_eq!(m("upstream exploded\n").as_deref(), Some("upstream exploded"));
        assert_eq!(m("<html>502</html>"), None);
        assert_eq!(m(r#"{"ok":true}"#), None);
        assert_eq!(m(""), None);
    }

    #[test]
    fn messages_are_bounded_on_char_boundaries() {
        let long = format!(r#"{{"error":"{}"}}"#, "é".repeat(2000));
        let m = upstream_message(long.as_bytes()).unwrap();
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(m.ends_with('…'));
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        for bad in ["-1", "NaN", "Wed, 21 Oct 2015 07:28:00 GMT", "1e400"] {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }

    #[test]
    fn classification() {
        let e = classify(400, "This model's maximum context length is 2048 tokens".into(), None);
        assert!(matches!(e, BackendError::ContextLength { .. }));
        let e = classify(503, "busy".into(), Some(Duration::from_secs(2)));
        assert!(matches!(e, BackendError::Status { status: 503, retry_after: Some(_), .. }));
        assert!(e.retryable());
    }

    #[test]
    fn bearer_header_is_sensitive() {
        let headers = BTreeMap::from([("x-extra".to_owned(), "1".to_owned())]);
        let s = ClientSettings {
            bearer: Some("sk-secret"),
            headers: &headers,
            connect_timeout: Duration::from_secs(1),
            pool_idle_per_host: 1,
            proxy: None,
            ca_file: None,
        };
        let map = default_headers(&s).unwrap();
        assert!(map[header::AUTHORIZATION].is_sensitive());
        assert!(!format!("{map:?}").contains("sk-secret"));
        assert_eq!(map["x-extra"], "1");
    }
}
