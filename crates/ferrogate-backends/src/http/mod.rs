//! HTTP plumbing shared by the HTTP adapters: one pooled keep-alive client per backend
//! ([`client`]: hyper-util, TCP_NODELAY, rustls, no proxy unless configured), bounded reads of
//! upstream bodies, and the mapping of transport and HTTP failures onto [`BackendError`].
//!
//! Invariant: an upstream error body reaches a `BackendError` only as an extracted message of at
//! most [`MAX_MESSAGE_CHARS`] characters, never raw; the API key header is marked sensitive.

mod client;

use std::future::Future;
use std::time::Duration;

use ferrogate_core::{BackendError, TimeoutKind};
use http::header::{self, HeaderMap};
use http_body_util::BodyExt;
use serde_json::Value;

pub(crate) use self::client::Response;
pub(crate) use self::client::{Body, BoxError, Call, ClientSettings, Upstream, extra_roots, is_json};

/// Longest upstream message kept in an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 500;
/// Most bytes of an error body read to find its message.
const ERROR_BODY_CAP: usize = 64 * 1024;
/// Most bytes of a whole (non-streamed) answer.
pub(crate) const RESPONSE_BODY_CAP: usize = 32 * 1024 * 1024;

/// Reads a whole body, refusing more than `cap` bytes.
pub(crate) async fn read_body(resp: Response, cap: usize) -> Result<Vec<u8>, BackendError> {
    let mut body = resp.into_body();
    // Sized once from Content-Length when the upstream sent one (bounded by `cap`).
    let hint = http_body::Body::size_hint(&body).exact().unwrap_or(0);
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0).min(cap));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BackendError::Protocol(error_chain(&*e)))?;
        if let Ok(chunk) = frame.into_data() {
            if out.len() + chunk.len() > cap {
                return Err(BackendError::Protocol(format!("response body is larger than {cap} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

/// Reads at most `cap` bytes of a body; a broken body yields what arrived.
async fn read_prefix(mut body: Body, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(chunk) = frame.into_data() {
            let room = cap.saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= cap {
                break;
            }
        }
    }
    out
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
pub(crate) async fn status_error(resp: Response) -> BackendError {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = read_prefix(resp.into_body(), ERROR_BODY_CAP).await;
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

/// A reqwest failure (a backend behind a proxy) → the variant that says which phase failed.
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
        BackendError::Closed(detail)
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
    use http::HeaderValue;

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
}
