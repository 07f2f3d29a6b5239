//! One error, three shapes: every `ApiError` renders OpenAI's body, and a response to an
//! Anthropic or Ollama route is re-rendered in that protocol's own shape by [`reshape`], which
//! the access stage applies to every response — for errors from the pipeline and from every
//! layer before the handler (auth 401, body 413/408, rate limits 429, drain 503, unknown routes
//! 404, panics 500) alike.
//!
//! - Anthropic (`/v1/messages…`): `{"type":"error","error":{"type","message"},"request_id"}`,
//!   the type following the status (`ErrorResponse::from_openai`); the status stays the
//!   gateway's (its 503 reads `overloaded_error`, which the SDKs retry).
//! - Ollama (`/api/…`): `{"error":"…"}` with the gateway's status.
//!
//! Invariant: only the body changes; the status, headers (`Retry-After`) and extensions
//! (`ErrorLog`, so the access layer still logs and counts the error) are kept.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use ferrogate_protocol::ErrorBody;
use ferrogate_protocol::anthropic::ErrorResponse as AnthropicError;
use ferrogate_protocol::ollama::ErrorResponse as OllamaError;

/// The public OpenAI-shaped body of an error response, kept in its extensions so [`reshape`] can
/// render it in another protocol's shape.
#[derive(Debug, Clone)]
pub struct PublicError(pub ErrorBody);

/// The front protocol a route speaks, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Front {
    pub fn of(path: &str) -> Self {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Front::Anthropic
        } else if path.starts_with("/api/") {
            Front::Ollama
        } else {
            Front::OpenAi
        }
    }

    /// The error body in this protocol's shape.
    pub fn render(self, status: u16, body: &ErrorBody, request_id: Option<&str>) -> Vec<u8> {
        let bytes = match self {
            Front::OpenAi => serde_json::to_vec(body),
            Front::Anthropic => {
                let shaped = AnthropicError::from_openai(status, body);
                let shaped = match request_id {
                    Some(id) => shaped.with_request_id(id),
                    None => shaped,
                };
                serde_json::to_vec(&shaped)
            }
            Front::Ollama => serde_json::to_vec(&OllamaError::new(body.error.message.clone())),
        };
        bytes.unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// `res`, the answer to a request for `path`, with an error of an Anthropic or Ollama route
/// re-rendered in that protocol's shape (the access stage passes every response through here).
pub fn reshape(path: &str, request_id: &str, res: Response) -> Response {
    let front = Front::of(path);
    if front == Front::OpenAi {
        return res;
    }
    let Some(PublicError(body)) = res.extensions().get::<PublicError>().cloned() else { return res };
    let (mut parts, _) = res.into_parts();
    let bytes = front.render(parts.status.as_u16(), &body, Some(request_id));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn routes_map_to_fronts() {
        assert_eq!(Front::of("/v1/messages"), Front::Anthropic);
        assert_eq!(Front::of("/v1/messages/count_tokens"), Front::Anthropic);
        assert_eq!(Front::of("/api/chat"), Front::Ollama);
        assert_eq!(Front::of("/api/nope"), Front::Ollama);
        assert_eq!(Front::of("/v1/chat/completions"), Front::OpenAi);
        assert_eq!(Front::of("/v1/messagesx"), Front::OpenAi);
    }

    #[test]
    fn renders_each_shape() {
        let body =
            ErrorBody::new("Incorrect API key provided.", "invalid_request_error", None, Some("invalid_api_key"));
        let a: serde_json::Value = serde_json::from_slice(&Front::Anthropic.render(401, &body, Some("r1"))).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "authentication_error");
        assert_eq!(a["error"]["message"], "Incorrect API key provided.");
        assert_eq!(a["request_id"], "r1");
        let o: serde_json::Value = serde_json::from_slice(&Front::Ollama.render(401, &body, None)).unwrap();
        assert_eq!(o, serde_json::json!({"error": "Incorrect API key provided."}));
    }
}
