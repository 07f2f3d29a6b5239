//! The HTTP edge of ferrogate: configuration, the axum router and its stages, handlers, SSE
//! framing, OpenAI-shaped errors, health and readiness, start-up and graceful shutdown.
//!
//! Invariant: handlers are thin — they decode, call `pipeline` (plan, then execute, then settle)
//! and encode. Engine internals are never visible here; backends come from `ferrogate-backends`.

// `ApiError` carries the public message, the logged cause and headers; it exists only on the
// error path, so its size costs nothing on successful requests.
#![allow(clippy::result_large_err)]

pub mod accept;
pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod guardrails;
pub mod handlers;
pub mod lifecycle;
pub mod limits;
pub mod observability;
pub mod pipeline;
pub mod resilience;
pub mod router;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod tenancy;
pub mod warmup;

pub use config::{Config, ConfigErrors};
pub use lifecycle::{Running, StartError, shutdown_signal, start, start_with_clock};
pub use state::AppState;
