//! Engine status and counters shared between the scheduler thread (writer) and callers
//! (readers): plain atomics, so `Engine::stats()` is cheap enough for every metrics scrape.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::template::TemplateSource;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineStatus {
    Loading,
    Ready,
    Failed(String),
}

/// What is loaded and how it runs; known once the model has loaded.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The GGUF file stem, e.g. `SmolLM2-135M-Instruct.Q4_1`.
    pub name: String,
    pub architecture: String,
    pub n_ctx_train: u32,
    pub n_params: u64,
    /// Size of the weights, bytes.
    pub size_bytes: u64,
    pub chat_template: TemplateSource,
    /// Resolved engine settings.
    pub parallel: usize,
    pub ctx_per_seq: u32,
    pub threads: usize,
}

/// A snapshot of the engine's gauges and counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub slots_total: usize,
    pub slots_busy: usize,
    /// Requests accepted but not yet in a slot.
    pub queue_depth: usize,
    /// KV cells holding tokens (running and cached-for-reuse sequences).
    pub kv_cells_used: u64,
    pub kv_cells_total: u64,
    pub prompt_tokens_total: u64,
    pub completion_tokens_total: u64,
    pub cached_tokens_total: u64,
    pub requests_total: u64,
    /// Weights + KV cache, bytes.
    pub memory_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub slots_total: AtomicUsize,
    pub slots_busy: AtomicUsize,
    pub queue_depth: AtomicUsize,
    pub kv_cells_used: AtomicU64,
    pub kv_cells_total: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub requests: AtomicU64,
    pub memory_bytes: AtomicU64,
    /// Requests submitted and not yet finished (queued or running): bounds the queue.
    pub outstanding: AtomicUsize,
    /// Moving average of request duration, ms: the basis of Retry-After.
    pub avg_request_ms: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> EngineStats {
        EngineStats {
            slots_total: self.slots_total.load(Relaxed),
            slots_busy: self.slots_busy.load(Relaxed),
            queue_depth: self.queue_depth.load(Relaxed),
            kv_cells_used: self.kv_cells_used.load(Relaxed),
            kv_cells_total: self.kv_cells_total.load(Relaxed),
            prompt_tokens_total: self.prompt_tokens.load(Relaxed),
            completion_tokens_total: self.completion_tokens.load(Relaxed),
            cached_tokens_total: self.cached_tokens.load(Relaxed),
            requests_total: self.requests.load(Relaxed),
            memory_bytes: self.memory_bytes.load(Relaxed),
        }
    }

    /// Reserves a place for a new request; false when `capacity` requests are already in.
    pub(crate) fn try_reserve(&self, capacity: usize) -> bool {
        self.outstanding.fetch_update(Relaxed, Relaxed, |n| (n < capacity).then_some(n + 1)).is_ok()
    }

    /// A request left the engine (finished, failed or cancelled).
    pub(crate) fn release(&self, ran_for: Option<Duration>) {
        let _ = self.outstanding.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        if let Some(d) = ran_for {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            let _ = self
                .avg_request_ms
                .fetch_update(Relaxed, Relaxed, |avg| Some(if avg == 0 { ms } else { (avg * 7 + ms) / 8 }));
        }
    }

    /// When a place is likely to free up: the average request time per wave of `parallel`
    /// requests ahead, at least one second.
    pub(crate) fn retry_after(&self, parallel: usize) -> Duration {
        let parallel = parallel.max(1) as u64;
        let ahead = (self.outstanding.load(Relaxed) as u64).saturating_sub(parallel) + 1;
        let waves = ahead.div_ceil(parallel);
        let ms = self.avg_request_ms.load(Relaxed).saturating_mul(waves);
        Duration::from_millis(ms).max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_capacity_and_release() {
        let s = Stats::default();
        assert!(s.try_reserve(2) && s.try_reserve(2));
        assert!(!s.try_reserve(2));
        s.release(None);
        assert!(s.try_reserve(2));
    }

    #[test]
    fn retry_after_scales_with_the_queue() {
        let s = Stats::default();
        assert_eq!(s.retry_after(4), Duration::from_secs(1));
        s.avg_request_ms.store(3000, Relaxed);
        for _ in 0..12 {
            s.try_reserve(100);
        }
        // 12 outstanding, 4 running: 9 ahead of a newcomer = 3 waves of 3 s.
        assert_eq!(s.retry_after(4), Duration::from_secs(9));
    }
}
