//! The engine concern: an embedded engine's `BackendStats` snapshot, pushed by the sampler.

use ferrogate_core::BackendStats;

use super::*;

impl Metrics {
    /// An embedded engine's state; `per_second`: completion tokens/s since the last sample.
    pub fn set_engine(&self, backend: &str, s: &BackendStats, per_second: Option<f64>) {
        let g = |name, v: f64| self.gauge(name, vec![label("backend", backend)]).set(v);
        g(MODEL_LOADED, if s.model_loaded { 1.0 } else { 0.0 });
        g(ENGINE_SLOTS, s.slots_total as f64);
        g(ENGINE_SLOTS_IN_USE, s.slots_busy as f64);
        g(ENGINE_QUEUE_DEPTH, s.queue_depth as f64);
        g(ENGINE_KV_USED, s.kv_cells_used as f64);
        g(ENGINE_KV_TOTAL, s.kv_cells_total as f64);
        g(ENGINE_KV_RATIO, if s.kv_cells_total == 0 { 0.0 } else { s.kv_cells_used as f64 / s.kv_cells_total as f64 });
        g(ENGINE_MEMORY, s.memory_bytes as f64);
        if let Some(r) = per_second {
            g(ENGINE_TOKENS_PER_SECOND, r);
        }
        self.counter(ENGINE_REQUESTS, vec![label("backend", backend)]).absolute(s.requests_total);
        self.counter(MODEL_LOADS, vec![label("backend", backend)]).absolute(s.model_loads_total);
        self.counter(MODEL_UNLOADS, vec![label("backend", backend)]).absolute(s.model_unloads_total);
        for (t, n) in [
            ("prompt", s.prompt_tokens_total),
            ("cached", s.cached_tokens_total),
            ("completion", s.completion_tokens_total),
        ] {
            self.counter(ENGINE_TOKENS, vec![label("backend", backend), slabel("token_type", t)]).absolute(n);
        }
    }
}
