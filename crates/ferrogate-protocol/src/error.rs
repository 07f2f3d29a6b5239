//! The OpenAI error body: `{"error":{"message","type","param","code"}}`, used for every error,
//! and [`ResponseError`], a backend answer another protocol can not express.

use serde::{Deserialize, Serialize};

/// The whole error response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// OpenAI's error object. `param` and `code` are always serialized (as `null` when absent),
/// as OpenAI does, so SDKs find the keys they expect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, kind: &str, param: Option<&str>, code: Option<&str>) -> Self {
        Self {
            error: ErrorObject {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            },
        }
    }
}

/// A backend answer that can not be expressed in a front protocol's shape (Anthropic's `input`
/// and Ollama's `arguments` must be JSON objects): an upstream fault, 502 at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the upstream answer has no choices")]
    NoChoice,
    #[error("the upstream's tool call {index} has arguments that are not a JSON object")]
    ToolArguments { index: usize },
}
