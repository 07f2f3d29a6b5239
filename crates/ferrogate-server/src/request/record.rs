//! How a request ended: its [`Outcome`] and the one [`RequestRecord`] that every consumer reads —
//! the access-log line, the usage-ledger row, the metrics, the root span's end and the dashboard
//! feed (pingora's logging phase). A request that reached a backend is recorded by `Settle`; one
//! refused or dropped before that, by the access layer — both through `settle::emit`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrogate_protocol::openai::{FinishReason, Usage};

use super::Endpoint;
use super::caller::Caller;
use crate::error::ErrorCode;

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Answered in full.
    Finished(FinishReason),
    /// Answered by the gateway itself, no backend called (an Ollama model load or unload).
    Answered,
    /// The client went away (before the response, or mid-stream).
    Cancelled,
    /// Failed at or after the backend call: an upstream failure, a timeout, a stream cut. `cause`
    /// is for the log only.
    Failed { code: ErrorCode, cause: String },
    /// Refused before any backend was called: invalid, unauthenticated, out of scope, over a
    /// limit, shed. `cause` is for the log only.
    Refused { code: ErrorCode, cause: String },
}

impl Outcome {
    /// The error code, if it ended in one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Outcome::Failed { code, .. } | Outcome::Refused { code, .. } => Some(*code),
            Outcome::Finished(_) | Outcome::Answered | Outcome::Cancelled => None,
        }
    }

    /// The closed label of metrics and spans: the error code, `cancelled`, or `none`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Outcome::Finished(_) | Outcome::Answered => "none",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed { code, .. } | Outcome::Refused { code, .. } => code.as_str(),
        }
    }

    /// The access log's `outcome`: the finish reason, `cancelled` or `error`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Finished(r) => r.as_str(),
            Outcome::Answered => "answered",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed { .. } | Outcome::Refused { .. } => "error",
        }
    }

    pub fn cause(&self) -> Option<&str> {
        match self {
            Outcome::Failed { cause, .. } | Outcome::Refused { cause, .. } => Some(cause),
            Outcome::Finished(_) | Outcome::Answered | Outcome::Cancelled => None,
        }
    }
}

/// Tokens a request is charged (docs/TENANCY.md): the provider's usage when it reported one (an
/// explicit 0 stays 0); otherwise, once anything was delivered or the client went away
/// mid-request, the prompt estimate plus the content deltas delivered; a request that failed
/// before producing anything is charged nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charged {
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
}

impl Charged {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

/// One request, as it ended. Built once (by `Settle` or the access layer), read by every sink.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    pub request_id: &'a str,
    pub endpoint: Endpoint,
    pub client_ip: IpAddr,
    /// Who called (`None`: auth off, or refused before auth).
    pub caller: Option<&'a Caller>,
    /// The caller's tenant name (stored keys).
    pub tenant: Option<&'a str>,
    /// The model name asked for (`""` when the body was not understood).
    pub requested: &'a str,
    /// The deployment that served or was planned, or `unknown`.
    pub deployment: &'a str,
    /// The backend called last, and the model name it was sent.
    pub backend: Option<&'a str>,
    pub model_served: Option<&'a str>,
    pub stream: bool,
    pub outcome: &'a Outcome,
    /// What the client got: the status, 200 once a stream had started, 499 when it went away
    /// before a response.
    pub status: u16,
    /// The usage shown (the backend's, else counted locally); zero when no backend was called.
    pub usage: Usage,
    /// What the ledger and budgets are charged.
    pub charged: Charged,
    /// A backend was called, or the answer came from the response cache: the record carries
    /// real usage.
    pub dispatched: bool,
    /// Answered from the response cache (no backend called; `backend` is `None`).
    pub cache_hit: bool,
    /// Arrival at the gateway.
    pub started: Instant,
    pub duration: Duration,
    /// Arrival → first content delivered.
    pub ttft: Option<Duration>,
    /// Backend call duration (from dispatch to the end).
    pub backend_duration: Option<Duration>,
    /// Generation time after the first token (streams), for inter-token latency.
    pub decode: Option<Duration>,
    /// Flagged guardrail findings.
    pub guardrails: Option<&'a str>,
}
