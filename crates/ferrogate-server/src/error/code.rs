//! [`ErrorCode`]: the closed set of errors the gateway answers with. Each code knows its HTTP
//! status, its OpenAI `type`, its wire `code`, its default `Retry-After` and whether it sheds load
//! by design — all by exhaustive matches, so a new code cannot be added without deciding each.
//!
//! Invariant: a code is never built from or compared as a string; `as_str` is its metric label
//! and log value (a closed set), `wire` what OpenAI clients read in `error.code`.

use std::time::Duration;

use axum::http::StatusCode;

/// Every error the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // --- the caller's request ---
    /// A malformed or invalid request (no more specific code; OpenAI's `code: null`).
    InvalidRequest,
    ContextLengthExceeded,
    ContentPolicyViolation,
    UnknownUrl,
    MethodNotAllowed,
    RequestTooLarge,
    BodyReadTimeout,
    /// A streaming client read nothing for `server.client_write_timeout_secs`.
    ClientStalled,
    ModelNotFound,
    /// An admin or usage resource that does not exist (or belongs to another tenant).
    NotFound,
    Conflict,
    /// The tenant holds `conversations.max_per_tenant` conversations.
    ConversationLimitReached,
    /// The tier the request was routed to serves only queued work (`background: true`, batches).
    BackgroundRequired,
    // --- who is calling ---
    InvalidApiKey,
    TooManyAuthFailures,
    EndpointNotAllowed,
    ModelNotAllowed,
    // --- limits and budgets ---
    InsufficientQuota,
    ConcurrencyLimitExceeded,
    RequestsRateLimited,
    TokensRateLimited,
    RateLimiterUnavailable,
    StoreUnavailable,
    // --- load shedding ---
    TooManyConnections,
    ShuttingDown,
    QueueFull,
    QueueTimeout,
    CircuitOpen,
    // --- upstreams ---
    NoBackendAvailable,
    ModelNotReady,
    BackendOverloaded,
    BackendUnreachable,
    BackendAuthFailed,
    BackendError,
    UpstreamTimeout,
    // --- the gateway itself ---
    InternalError,
}

impl ErrorCode {
    /// The HTTP status it answers with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidRequest | ContextLengthExceeded | ContentPolicyViolation | BackgroundRequired => {
                StatusCode::BAD_REQUEST
            }
            InvalidApiKey => StatusCode::UNAUTHORIZED,
            EndpointNotAllowed | ModelNotAllowed => StatusCode::FORBIDDEN,
            UnknownUrl | ModelNotFound | NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BodyReadTimeout | ClientStalled => StatusCode::REQUEST_TIMEOUT,
            Conflict => StatusCode::CONFLICT,
            ConversationLimitReached => StatusCode::TOO_MANY_REQUESTS,
            RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            TooManyAuthFailures
            | InsufficientQuota
            | ConcurrencyLimitExceeded
            | RequestsRateLimited
            | TokensRateLimited => StatusCode::TOO_MANY_REQUESTS,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            BackendUnreachable | BackendAuthFailed | BackendError => StatusCode::BAD_GATEWAY,
            RateLimiterUnavailable
            | StoreUnavailable
            | TooManyConnections
            | ShuttingDown
            | QueueFull
            | QueueTimeout
            | CircuitOpen
            | NoBackendAvailable
            | ModelNotReady
            | BackendOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// OpenAI's error `type`.
    pub fn kind(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest
            | ContextLengthExceeded
            | ContentPolicyViolation
            | UnknownUrl
            | MethodNotAllowed
            | RequestTooLarge
            | BodyReadTimeout
            | ClientStalled
            | ModelNotFound
            | Conflict
            | ConversationLimitReached
            | BackgroundRequired => "invalid_request_error",
            NotFound => "not_found_error",
            InvalidApiKey | TooManyAuthFailures => "authentication_error",
            EndpointNotAllowed | ModelNotAllowed => "permission_error",
            InsufficientQuota => "insufficient_quota",
            ConcurrencyLimitExceeded | RequestsRateLimited => "requests",
            TokensRateLimited => "tokens",
            RateLimiterUnavailable
            | StoreUnavailable
            | TooManyConnections
            | ShuttingDown
            | QueueFull
            | QueueTimeout
            | CircuitOpen
            | NoBackendAvailable
            | ModelNotReady
            | BackendOverloaded
            | BackendUnreachable
            | BackendAuthFailed
            | BackendError
            | UpstreamTimeout
            | InternalError => "server_error",
        }
    }

    /// The error's `code` on the wire; `None` for a plain invalid request (as OpenAI sends).
    pub fn wire(self) -> Option<&'static str> {
        match self {
            ErrorCode::InvalidRequest => None,
            other => Some(other.as_str()),
        }
    }

    /// The closed label of metrics, logs and the usage ledger.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request_error",
            ContextLengthExceeded => "context_length_exceeded",
            ContentPolicyViolation => "content_policy_violation",
            UnknownUrl => "unknown_url",
            MethodNotAllowed => "method_not_allowed",
            RequestTooLarge => "request_too_large",
            BodyReadTimeout => "body_read_timeout",
            ClientStalled => "client_stalled",
            ModelNotFound => "model_not_found",
            NotFound => "not_found",
            Conflict => "conflict",
            ConversationLimitReached => "conversation_limit_reached",
            BackgroundRequired => "background_required",
            InvalidApiKey => "invalid_api_key",
            TooManyAuthFailures => "too_many_auth_failures",
            EndpointNotAllowed => "endpoint_not_allowed",
            ModelNotAllowed => "model_not_allowed",
            InsufficientQuota => "insufficient_quota",
            ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
            RequestsRateLimited | TokensRateLimited => "rate_limit_exceeded",
            RateLimiterUnavailable => "rate_limiter_unavailable",
            StoreUnavailable => "store_unavailable",
            TooManyConnections => "too_many_connections",
            ShuttingDown => "shutting_down",
            QueueFull => "queue_full",
            QueueTimeout => "queue_timeout",
            CircuitOpen => "circuit_open",
            NoBackendAvailable => "no_backend_available",
            ModelNotReady => "model_not_ready",
            BackendOverloaded => "backend_overloaded",
            BackendUnreachable => "backend_unreachable",
            BackendAuthFailed => "backend_auth_failed",
            BackendError => "backend_error",
            UpstreamTimeout => "upstream_timeout",
            InternalError => "internal_error",
        }
    }

    /// `Retry-After` when the error itself knows no better wait.
    pub fn retry_after(self) -> Option<Duration> {
        use ErrorCode::*;
        match self {
            ShuttingDown | ModelNotReady => Some(Duration::from_secs(5)),
            RateLimiterUnavailable
            | StoreUnavailable
            | TooManyConnections
            | QueueFull
            | QueueTimeout
            | CircuitOpen
            | NoBackendAvailable
            | BackendOverloaded => Some(Duration::from_secs(1)),
            InvalidRequest
            | ContextLengthExceeded
            | ContentPolicyViolation
            | UnknownUrl
            | MethodNotAllowed
            | RequestTooLarge
            | BodyReadTimeout
            | ClientStalled
            | ModelNotFound
            | NotFound
            | Conflict
            | ConversationLimitReached
            | BackgroundRequired
            | InvalidApiKey
            | TooManyAuthFailures
            | EndpointNotAllowed
            | ModelNotAllowed
            | InsufficientQuota
            | ConcurrencyLimitExceeded
            | RequestsRateLimited
            | TokensRateLimited
            | BackendUnreachable
            | BackendAuthFailed
            | BackendError
            | UpstreamTimeout
            | InternalError => None,
        }
    }

    /// A 503 that sheds load by design (full queue, waited too long, open circuit, draining,
    /// connection cap): the client retries after `Retry-After`, metrics count it, and the access
    /// log keeps it at info. A warning per refusal would turn an overload into a flood of log
    /// writes, each flushed at once, on the very core that is refusing.
    pub fn is_load_shed(self) -> bool {
        use ErrorCode::*;
        match self {
            QueueFull | QueueTimeout | CircuitOpen | ShuttingDown | TooManyConnections => true,
            InvalidRequest
            | ContextLengthExceeded
            | ContentPolicyViolation
            | UnknownUrl
            | MethodNotAllowed
            | RequestTooLarge
            | BodyReadTimeout
            | ClientStalled
            | ModelNotFound
            | NotFound
            | Conflict
            | ConversationLimitReached
            | BackgroundRequired
            | InvalidApiKey
            | TooManyAuthFailures
            | EndpointNotAllowed
            | ModelNotAllowed
            | InsufficientQuota
            | ConcurrencyLimitExceeded
            | RequestsRateLimited
            | TokensRateLimited
            | RateLimiterUnavailable
            | StoreUnavailable
            | NoBackendAvailable
            | ModelNotReady
            | BackendOverloaded
            | BackendUnreachable
            | BackendAuthFailed
            | BackendError
            | UpstreamTimeout
            | InternalError => false,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode::{self, *};

    /// Every code, for the property checks below.
    const ALL: &[ErrorCode] = &[
        InvalidRequest,
        ContextLengthExceeded,
        ContentPolicyViolation,
        UnknownUrl,
        MethodNotAllowed,
        RequestTooLarge,
        BodyReadTimeout,
        ClientStalled,
        ModelNotFound,
        NotFound,
        Conflict,
        ConversationLimitReached,
        BackgroundRequired,
        InvalidApiKey,
        TooManyAuthFailures,
        EndpointNotAllowed,
        ModelNotAllowed,
        InsufficientQuota,
        ConcurrencyLimitExceeded,
        RequestsRateLimited,
        TokensRateLimited,
        RateLimiterUnavailable,
        StoreUnavailable,
        TooManyConnections,
        ShuttingDown,
        QueueFull,
        QueueTimeout,
        CircuitOpen,
        NoBackendAvailable,
        ModelNotReady,
        BackendOverloaded,
        BackendUnreachable,
        BackendAuthFailed,
        BackendError,
        UpstreamTimeout,
        InternalError,
    ];

    #[test]
    fn labels_are_distinct_but_for_the_two_rate_limits() {
        let mut seen = std::collections::HashSet::new();
        for c in ALL {
            if !seen.insert(c.as_str()) {
                assert_eq!(c.as_str(), "rate_limit_exceeded", "{c:?} repeats a label");
            }
        }
        assert_eq!(seen.len(), ALL.len() - 1);
    }

    #[test]
    fn load_shedding_and_default_waits_are_server_side() {
        for c in ALL {
            if c.is_load_shed() {
                assert_eq!(c.status().as_u16(), 503, "{c:?}");
                assert!(c.retry_after().is_some(), "{c:?} sheds load without Retry-After");
            }
            if c.retry_after().is_some() {
                assert!(c.status().is_server_error(), "{c:?}");
            }
            assert_eq!(c.wire().is_none(), *c == InvalidRequest, "{c:?}");
        }
    }

    #[test]
    fn openai_types_follow_the_status() {
        for c in ALL {
            let kind = c.kind();
            match c.status().as_u16() {
                401 => assert_eq!(kind, "authentication_error"),
                403 => assert_eq!(kind, "permission_error"),
                s if s >= 500 => assert_eq!(kind, "server_error", "{c:?}"),
                _ => assert_ne!(kind, "server_error", "{c:?}"),
            }
        }
    }
}
