//! `ApiError`: the one error type at the HTTP edge. Every error leaves as an OpenAI-shaped body
//! with the status of its [`ErrorCode`] — re-rendered in Anthropic's or Ollama's shape on their
//! routes ([`front`]); clients see a public message, the full cause goes to the log.
//!
//! Invariant: converting to a response has no side effects — the cause is put into the response
//! extensions and the access layer logs it once.

mod code;
pub mod front;

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrogate_core::queue::QueueError;
use ferrogate_core::tenancy::StoreError;
use ferrogate_core::tenancy::quota::Refusal;
use ferrogate_core::{BackendError, Blame, GatewayError, TimeoutKind};
use ferrogate_protocol::ErrorBody;
use ferrogate_protocol::openai::InvalidParam;

pub use self::code::ErrorCode;
use self::front::PublicError;

#[derive(Debug, Clone)]
pub struct ApiError {
    /// What went wrong, from a closed set: decides the status, OpenAI's `type` and `code`.
    pub code: ErrorCode,
    pub param: Option<String>,
    /// Safe to show the client.
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The full cause for the log; never sent.
    pub cause: Option<String>,
    pub blame: Blame,
}

/// Put into response extensions so the access layer can log what went wrong.
#[derive(Debug, Clone)]
pub struct ErrorLog {
    pub code: ErrorCode,
    pub cause: String,
    pub blame: Blame,
}

impl ErrorLog {
    /// See [`ErrorCode::is_load_shed`].
    pub fn is_load_shed(&self) -> bool {
        self.code.is_load_shed()
    }
}

impl ApiError {
    /// An error of `code` with its default `Retry-After`; blamed on the caller unless it is a
    /// server-side code (then the gateway, or the upstream for the constructors that say so).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let blame = if code.status().is_server_error() { Blame::Gateway } else { Blame::Caller };
        Self { code, param: None, message: message.into(), retry_after: code.retry_after(), cause: None, blame }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        Self { param, ..Self::new(ErrorCode::InvalidRequest, message) }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidApiKey, message)
    }

    pub fn route_not_found(path: &str) -> Self {
        Self::new(ErrorCode::UnknownUrl, format!("Unknown request URL: {path}"))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, "Method not allowed for this URL")
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(ErrorCode::RequestTooLarge, format!("Request body is larger than the limit of {limit} bytes"))
    }

    /// A streaming client stopped reading for longer than `server.client_write_timeout_secs`:
    /// the stream was cut and its upstream cancelled. Recorded on the request (the client gets
    /// nothing more), so the status is only the ledger's and the metrics'.
    pub fn client_stalled(waited: Duration) -> Self {
        let message = format!("The client read nothing for {} s; the stream was cut", waited.as_secs());
        Self::new(ErrorCode::ClientStalled, message)
    }

    /// A guardrail refused the request; names the rule, never what matched.
    pub fn content_policy(rule: &'static str) -> Self {
        let message = format!("The request was refused by the gateway's content policy (rule: {rule})");
        Self::new(ErrorCode::ContentPolicyViolation, message)
    }

    /// The request body did not arrive within `server.body_read_timeout_secs` of its headers.
    pub fn body_read_timeout(limit: Duration) -> Self {
        Self::new(ErrorCode::BodyReadTimeout, format!("The request body did not arrive within {} s", limit.as_secs()))
    }

    /// A connection beyond `server.max_connections` (answered by the accept loop, then closed).
    pub fn too_many_connections() -> Self {
        Self::new(ErrorCode::TooManyConnections, "The server has too many open connections; retry shortly")
    }

    pub fn shutting_down() -> Self {
        Self::new(ErrorCode::ShuttingDown, "The server is shutting down; retry on another instance")
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::InternalError, "The server had an error processing the request")
        }
    }

    /// An upstream's failure: blamed as the backend error says, its text kept for the log only.
    fn upstream(code: ErrorCode, message: impl Into<String>, e: &BackendError) -> Self {
        Self { cause: Some(e.to_string()), blame: e.blame(), ..Self::new(code, message) }
    }

    /// The OpenAI error object, also used for `data: {"error":…}` events mid-stream.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.message.clone(), self.code.kind(), self.param.as_deref(), self.code.wire())
    }
}

/// An answer a front protocol can not express (Anthropic, Ollama): the backend's fault, 502.
impl From<ferrogate_protocol::ResponseError> for ApiError {
    fn from(e: ferrogate_protocol::ResponseError) -> Self {
        Self {
            cause: Some(e.to_string()),
            blame: Blame::Upstream,
            ..Self::new(ErrorCode::BackendError, "The model backend's answer can not be expressed in this API")
        }
    }
}

impl From<InvalidParam> for ApiError {
    fn from(e: InvalidParam) -> Self {
        Self::invalid(Some(e.param), e.message)
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Invalid(p) => p.into(),
            GatewayError::ModelNotFound(m) => Self {
                param: Some("model".into()),
                ..Self::new(
                    ErrorCode::ModelNotFound,
                    format!("The model '{}' does not exist", ferrogate_protocol::openai::shape::clip(&m)),
                )
            },
            GatewayError::NoBackend(d) => Self {
                blame: Blame::Upstream,
                ..Self::new(ErrorCode::NoBackendAvailable, format!("No backend of model '{d}' is available"))
            },
            GatewayError::ShuttingDown => Self::shutting_down(),
            GatewayError::Overloaded { message, retry_after } => {
                Self { retry_after: Some(retry_after), ..Self::new(ErrorCode::QueueFull, message) }
            }
            GatewayError::Backend(b) => from_backend(b),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        from_backend(e)
    }
}

fn from_backend(e: BackendError) -> ApiError {
    match &e {
        BackendError::Connect(_) | BackendError::Closed(_) => {
            ApiError::upstream(ErrorCode::BackendUnreachable, "The model backend could not be reached", &e)
        }
        BackendError::Timeout(TimeoutKind::Connect) => {
            ApiError::upstream(ErrorCode::UpstreamTimeout, "Connecting to the model backend timed out", &e)
        }
        BackendError::Timeout(k) => ApiError::upstream(
            ErrorCode::UpstreamTimeout,
            format!("The model backend did not answer in time ({} timeout)", k.as_str()),
            &e,
        ),
        BackendError::Status { status, message, retry_after } => {
            from_upstream_status(*status, message, *retry_after, &e)
        }
        BackendError::Protocol(_) => {
            ApiError::upstream(ErrorCode::BackendError, "The model backend sent an invalid response", &e)
        }
        BackendError::Overloaded { message, retry_after } => ApiError {
            retry_after: Some(*retry_after),
            ..ApiError::upstream(ErrorCode::QueueFull, message.clone(), &e)
        },
        BackendError::ContextLength { message } => ApiError {
            param: Some("messages".into()),
            ..ApiError::new(ErrorCode::ContextLengthExceeded, message.clone())
        },
        BackendError::InvalidRequest { param, message } => ApiError::invalid(param.clone(), message.clone()),
        BackendError::NotReady(_) => {
            ApiError::upstream(ErrorCode::ModelNotReady, "The model is still loading; retry shortly", &e)
        }
        BackendError::Internal(_) => ApiError {
            blame: Blame::Gateway,
            ..ApiError::upstream(ErrorCode::InternalError, "The inference engine failed on this request", &e)
        },
    }
}

fn from_upstream_status(status: u16, message: &str, retry_after: Option<Duration>, e: &BackendError) -> ApiError {
    match status {
        429 | 503 => ApiError {
            retry_after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
            ..ApiError::upstream(ErrorCode::BackendOverloaded, "The model backend is overloaded; retry shortly", e)
        },
        408 => ApiError::upstream(ErrorCode::UpstreamTimeout, "The model backend timed out", e),
        401 | 403 => {
            ApiError::upstream(ErrorCode::BackendAuthFailed, "The gateway is not authorized by the model backend", e)
        }
        404 => ApiError::upstream(ErrorCode::BackendError, "The model backend does not serve the configured model", e),
        400..=499 => ApiError {
            cause: Some(e.to_string()),
            ..ApiError::invalid(None, format!("The model backend rejected the request: {message}"))
        },
        _ => ApiError::upstream(ErrorCode::BackendError, "The model backend failed to process the request", e),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut res = (self.status(), Json(&body)).into_response();
        res.extensions_mut().insert(PublicError(body));
        if let Some(ra) = self.retry_after {
            let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res.extensions_mut().insert(ErrorLog {
            code: self.code,
            cause: self.cause.unwrap_or(self.message),
            blame: self.blame,
        });
        res
    }
}

// === tenancy: keys, scopes, quotas, the admin API ===

impl ApiError {
    /// 403: the key lacks a scope (a model: `ModelNotAllowed`; an endpoint group:
    /// `EndpointNotAllowed`).
    pub fn permission_denied(code: ErrorCode, param: Option<&str>, message: impl Into<String>) -> Self {
        Self { param: param.map(str::to_owned), ..Self::new(code, message) }
    }

    /// 429 before any key lookup: too many failed attempts from this client IP.
    pub fn too_many_auth_failures(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                ErrorCode::TooManyAuthFailures,
                "Too many failed authentication attempts from this address; retry later",
            )
        }
    }

    /// 404 of an admin or usage resource (also what another tenant's id gets: never data).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("No {what} '{id}'"))
    }

    /// 429 from the key's or tenant's limits.
    pub fn refused(r: &Refusal, now_ms: i64) -> Self {
        let code = match r {
            Refusal::Budget { .. } => ErrorCode::InsufficientQuota,
            Refusal::Concurrency { .. } => ErrorCode::ConcurrencyLimitExceeded,
        };
        let wait = u64::try_from(r.retry_after_ms(now_ms)).unwrap_or(1);
        Self { retry_after: Some(Duration::from_millis(wait)), ..Self::new(code, r.to_string()) }
    }
}

// === rate limits ===

impl ApiError {
    /// 429 from a rate limit on requests or on tokens (OpenAI's error types `requests`, `tokens`).
    pub fn rate_limited(tokens: bool, message: String, retry_after: Duration) -> Self {
        let code = if tokens { ErrorCode::TokensRateLimited } else { ErrorCode::RequestsRateLimited };
        Self { retry_after: Some(retry_after), ..Self::new(code, message) }
    }

    /// 503: the shared rate-limit store did not answer and the policy is `fail_closed`.
    pub fn limiter_unavailable(cause: &str) -> Self {
        Self {
            cause: Some(cause.to_owned()),
            ..Self::new(ErrorCode::RateLimiterUnavailable, "Rate limits cannot be checked right now; retry shortly")
        }
    }
}

// === resilience: queue, breakers ===

impl ApiError {
    /// 503 when every backend of a deployment has its circuit breaker open (and no fallback
    /// could serve): answered at once, `Retry-After` = when the first breaker half-opens.
    pub fn circuit_open(deployment: &str, retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            blame: Blame::Upstream,
            ..Self::new(
                ErrorCode::CircuitOpen,
                format!("The backends of model '{deployment}' are failing; retry shortly"),
            )
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let (code, message) = match e {
            QueueError::Full { .. } => {
                (ErrorCode::QueueFull, "The model is at capacity and its queue is full; retry shortly")
            }
            QueueError::Timeout { .. } => (
                ErrorCode::QueueTimeout,
                "The model is at capacity and the request waited too long for a slot; retry shortly",
            ),
        };
        Self { retry_after: Some(e.retry_after()), cause: Some(e.to_string()), ..Self::new(code, message) }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => Self::not_found(what, &id),
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            StoreError::Invalid(m) => Self::invalid(None, m.0),
            StoreError::Unavailable(_) => Self {
                cause: Some(e.to_string()),
                ..Self::new(ErrorCode::StoreUnavailable, "The key and usage store is unavailable; retry shortly")
            },
            StoreError::Database(_) | StoreError::Corrupt(_) => Self::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_of_backend_errors() {
        let cases: Vec<(BackendError, u16)> = vec![
            (BackendError::Connect("x".into()), 502),
            (BackendError::Timeout(TimeoutKind::FirstToken), 504),
            (BackendError::Status { status: 500, message: "x".into(), retry_after: None }, 502),
            (BackendError::Status { status: 429, message: "x".into(), retry_after: None }, 503),
            (BackendError::Status { status: 503, message: "x".into(), retry_after: None }, 503),
            (BackendError::Status { status: 400, message: "x".into(), retry_after: None }, 400),
            (BackendError::Protocol("x".into()), 502),
            (BackendError::Overloaded { message: "x".into(), retry_after: Duration::from_secs(2) }, 503),
            (BackendError::ContextLength { message: "x".into() }, 400),
            (BackendError::NotReady("x".into()), 503),
            (BackendError::Internal("x".into()), 500),
        ];
        for (e, status) in cases {
            let api = ApiError::from(e.clone());
            assert_eq!(api.status().as_u16(), status, "{e:?}");
            assert!(!api.message.contains("x\""), "internal text must not leak");
        }
    }

    #[test]
    fn load_shedding_503s_are_told_apart_from_failures() {
        let log = |e: ApiError| {
            let res = e.into_response();
            res.extensions().get::<ErrorLog>().map(|l| (res.status().as_u16(), l.is_load_shed()))
        };
        let full = QueueError::Full { retry_after: Duration::from_secs(1) };
        assert_eq!(log(full.into()), Some((503, true)));
        assert_eq!(log(ApiError::circuit_open("m", Duration::from_secs(1))), Some((503, true)));
        assert_eq!(log(ApiError::shutting_down()), Some((503, true)));
        // The embedded engine's own full queue sheds load the same way.
        let overloaded = BackendError::Overloaded { message: "x".into(), retry_after: Duration::from_secs(2) };
        assert_eq!(log(overloaded.into()), Some((503, true)));
        // An upstream that failed, or answered 503 itself, is a failure to warn about.
        assert_eq!(log(BackendError::Connect("x".into()).into()), Some((502, false)));
        let upstream_503 = BackendError::Status { status: 503, message: "x".into(), retry_after: None };
        assert_eq!(log(upstream_503.into()), Some((503, false)));
    }

    #[test]
    fn internal_cause_not_in_public_message() {
        let api = ApiError::from(BackendError::Connect("10.0.0.7:8000 refused".into()));
        assert!(!api.message.contains("10.0.0.7"));
        assert!(api.cause.unwrap_or_default().contains("10.0.0.7"));
    }
}
