//! Anthropic's error body `{"type":"error","error":{"type","message"}}` and the mapping from an
//! HTTP status (or an OpenAI-shaped gateway error) to Anthropic's error types.
//!
//! The statuses are Anthropic's documented ones: 400 invalid_request_error (also any other 4xx),
//! 401 authentication_error, 402 billing_error, 403 permission_error, 404 not_found_error,
//! 413 request_too_large, 429 rate_limit_error, 500 api_error, 504 timeout_error,
//! 529 overloaded_error. ferrogate's own 503 (queue full, no healthy backend) reads as
//! `overloaded_error`, which the Anthropic SDKs retry as they retry 529.

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// The error body, for HTTP errors and for the stream's `error` event (whose `data` has the
/// same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorObject,
    /// The gateway's request id, as Anthropic adds its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `error`: its type and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub message: String,
}

/// Anthropic's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    BillingError,
    PermissionError,
    NotFoundError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
    TimeoutError,
    OverloadedError,
}

impl ErrorType {
    /// The type for an HTTP status; unknown 4xx are `invalid_request_error`, other 5xx
    /// `api_error`.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => ErrorType::AuthenticationError,
            402 => ErrorType::BillingError,
            403 => ErrorType::PermissionError,
            404 => ErrorType::NotFoundError,
            413 => ErrorType::RequestTooLarge,
            429 => ErrorType::RateLimitError,
            503 | 529 => ErrorType::OverloadedError,
            504 => ErrorType::TimeoutError,
            400..=499 => ErrorType::InvalidRequestError,
            _ => ErrorType::ApiError,
        }
    }

    /// Anthropic's status for this type.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequestError => 400,
            ErrorType::AuthenticationError => 401,
            ErrorType::BillingError => 402,
            ErrorType::PermissionError => 403,
            ErrorType::NotFoundError => 404,
            ErrorType::RequestTooLarge => 413,
            ErrorType::RateLimitError => 429,
            ErrorType::ApiError => 500,
            ErrorType::TimeoutError => 504,
            ErrorType::OverloadedError => 529,
        }
    }

    /// The wire name, e.g. `"rate_limit_error"` (for metrics labels and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::AuthenticationError => "authentication_error",
            ErrorType::BillingError => "billing_error",
            ErrorType::PermissionError => "permission_error",
            ErrorType::NotFoundError => "not_found_error",
            ErrorType::RequestTooLarge => "request_too_large",
            ErrorType::RateLimitError => "rate_limit_error",
            ErrorType::ApiError => "api_error",
            ErrorType::TimeoutError => "timeout_error",
            ErrorType::OverloadedError => "overloaded_error",
        }
    }
}

impl ErrorResponse {
    /// An error body of `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self { kind: "error".to_owned(), error: ErrorObject { kind, message: message.into() }, request_id: None }
    }

    /// The gateway's OpenAI-shaped error (status and body, as `ApiError` renders them) in
    /// Anthropic's shape: the type follows the status; the message is kept, prefixed with the
    /// parameter it names, since Anthropic's body has no `param`.
    pub fn from_openai(status: u16, body: &ErrorBody) -> Self {
        let message = match &body.error.param {
            Some(param) if !body.error.message.contains(param.as_str()) => {
                format!("{param}: {}", body.error.message)
            }
            _ => body.error.message.clone(),
        };
        Self::new(ErrorType::from_status(status), message)
    }

    /// Adds the request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_map_to_documented_types_and_back() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            let t = ErrorType::from_status(status);
            assert_eq!(t.as_str(), kind);
            assert_eq!(t.status(), status);
            assert_eq!(serde_json::to_value(t).unwrap(), json!(kind));
        }
        assert_eq!(ErrorType::from_status(422), ErrorType::InvalidRequestError);
        assert_eq!(ErrorType::from_status(503), ErrorType::OverloadedError);
        assert_eq!(ErrorType::from_status(502), ErrorType::ApiError);
    }

    #[test]
    fn openai_errors_keep_message_and_name_the_param() {
        let body = ErrorBody::new("must be at most 1", "invalid_request_error", Some("temperature"), None);
        let e = ErrorResponse::from_openai(400, &body).with_request_id("req_1");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "temperature: must be at most 1"}, "request_id": "req_1"})
        );
        let queue = ErrorBody::new("queue full", "server_error", None, Some("queue_full"));
        assert_eq!(ErrorResponse::from_openai(503, &queue).error.kind, ErrorType::OverloadedError);
    }
}
