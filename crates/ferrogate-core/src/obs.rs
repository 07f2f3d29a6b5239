//! What a backend may report for observability, free of any metrics or tracing library: the W3C
//! trace context to forward upstream, the engine phase times of one request (for its trace), and a
//! snapshot of an engine's gauges and counters (for `/metrics` and the dashboard).
//!
//! Invariant: all of it is optional and cheap — an unsampled request carries no phase recorder
//! and no trace header, and backends that have nothing to report return `None`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Per-request observability hooks, carried by `InferenceRequest`.
#[derive(Debug, Clone, Default)]
pub struct RequestObs {
    /// `traceparent` (and `tracestate`) headers for HTTP upstreams; empty when tracing is off.
    pub trace_headers: Vec<(&'static str, String)>,
    /// Where an engine records its phase times; `None` unless the request's trace is sampled.
    pub phases: Option<Arc<EnginePhases>>,
}

/// When an engine request left its queue, produced its first token and finished. Each is set
/// once by the backend (first write wins), read when the request settles.
#[derive(Debug, Default)]
pub struct EnginePhases {
    pub submitted: OnceLock<Instant>,
    /// Got a slot: queue wait ends, prompt processing (prefill) begins.
    pub started: OnceLock<Instant>,
    /// First generated token: prefill ends, decoding begins.
    pub first_token: OnceLock<Instant>,
    pub done: OnceLock<Instant>,
}

impl EnginePhases {
    /// Sets `slot` to now if it is unset.
    pub fn mark(slot: &OnceLock<Instant>) {
        let _ = slot.set(Instant::now());
    }
}

/// A snapshot of an engine's state, read at scrape time (atomics; no locks on the engine thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// The model is loaded and serving.
    pub model_loaded: bool,
    pub slots_total: u64,
    pub slots_busy: u64,
    /// Requests accepted but waiting for a slot.
    pub queue_depth: u64,
    pub kv_cells_used: u64,
    pub kv_cells_total: u64,
    pub prompt_tokens_total: u64,
    pub completion_tokens_total: u64,
    pub cached_tokens_total: u64,
    pub requests_total: u64,
    pub memory_bytes: u64,
    /// Times the model was loaded (at start, or on demand) and unloaded (idle, or to make room).
    pub model_loads_total: u64,
    pub model_unloads_total: u64,
}
