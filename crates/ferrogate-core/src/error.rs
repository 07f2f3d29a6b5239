//! Errors of the gateway's own stages, with blame (who caused it) as in pingora.

use std::time::Duration;

use ferrogate_protocol::openai::InvalidParam;

use crate::backend::BackendError;
pub use crate::blame::Blame;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid request: {}", .0.message)]
    Invalid(InvalidParam),
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("no backend of deployment '{0}' is available")]
    NoBackend(String),
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("overloaded: {message}")]
    Overloaded { message: String, retry_after: Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<InvalidParam> for GatewayError {
    fn from(e: InvalidParam) -> Self {
        GatewayError::Invalid(e)
    }
}

impl GatewayError {
    pub fn blame(&self) -> Blame {
        match self {
            GatewayError::Invalid(_) | GatewayError::ModelNotFound(_) => Blame::Caller,
            GatewayError::NoBackend(_) => Blame::Upstream,
            GatewayError::ShuttingDown | GatewayError::Overloaded { .. } => Blame::Gateway,
            GatewayError::Backend(e) => e.blame(),
        }
    }
}
