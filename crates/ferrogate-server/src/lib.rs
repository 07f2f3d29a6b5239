//! The HTTP edge of ferrogate: the accept loop, the axum router and its stages, handlers (one
//! module per front protocol: OpenAI, Anthropic Messages, Ollama), the request pipeline they call,
//! stream framing (SSE, NDJSON), errors in each protocol's shape,
//! health and readiness, graceful shutdown — over the services the composition root (the
//! `ferrogate` binary) builds and hands in as core's traits ([`Services`]).
//!
//! Invariant: handlers are thin — they decode, call `pipeline::run` and encode. Backends, stores
//! and engines are never named here: the server sees `Backend`, `TenancyStore`, `LimitStore`.

// `ApiError` carries the public message, the logged cause and headers; it exists only on the
// error path, so its size costs nothing on successful requests.
#![allow(clippy::result_large_err)]

pub mod accept;
pub mod access;
pub mod admin;
pub mod auth;
pub mod body;
pub mod entry;
pub mod error;
pub mod guardrails;
pub mod handlers;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod live;
pub mod observability;
pub mod pipeline;
pub mod probes;
pub mod request;
pub mod resilience;
pub mod router;
pub mod sampler;
pub mod settings;
pub mod settle;
pub mod sse;
pub mod state;
pub mod tenancy;
pub mod tls;
pub mod warmup;

pub use lifecycle::{Running, StartError, shutdown_signal, start};
pub use settings::Settings;
pub use state::{AppState, LiveServices, Services};
