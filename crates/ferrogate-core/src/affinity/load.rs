//! The load an engine reports about itself (requests running and waiting, KV-cache use), kept
//! per target in a [`LoadCell`] that a scrape loop writes and every pick reads.
//!
//! Invariant: reads and writes are lock-free atomics; a value older than the caller's bound is
//! not used (a scrape that fails or stops leaves the picker with the gateway's own in-flight
//! count, never a stale picture).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One reading of an engine's load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineLoad {
    /// Requests the engine is decoding or prefilling now.
    pub running: u32,
    /// Requests the engine accepted but has no slot for yet (its own queue).
    pub waiting: u32,
    /// Share of the KV cache in use, 0..=1; `None` when the engine does not say.
    pub kv_usage: Option<f32>,
}

impl EngineLoad {
    /// Requests the engine holds, running or waiting.
    pub fn pending(&self) -> u32 {
        self.running.saturating_add(self.waiting)
    }
}

/// The latest [`EngineLoad`] of one target, with when it was read.
#[derive(Debug)]
pub struct LoadCell {
    running: AtomicU32,
    waiting: AtomicU32,
    /// KV use in thousandths; `u32::MAX`: unknown.
    kv_milli: AtomicU32,
    /// Milliseconds after `epoch` of the last write, plus one (0: never written).
    at_ms: AtomicU64,
    epoch: Instant,
}

impl Default for LoadCell {
    fn default() -> Self {
        Self {
            running: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            kv_milli: AtomicU32::new(u32::MAX),
            at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl LoadCell {
    /// Stores a reading taken now.
    pub fn set(&self, load: EngineLoad) {
        self.set_at(load, Instant::now());
    }

    pub fn set_at(&self, load: EngineLoad, now: Instant) {
        self.running.store(load.running, Ordering::Relaxed);
        self.waiting.store(load.waiting, Ordering::Relaxed);
        let kv = load.kv_usage.map_or(u32::MAX, |k| (k.clamp(0.0, 1.0) * 1000.0).round() as u32);
        self.kv_milli.store(kv, Ordering::Relaxed);
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.at_ms.store(ms.saturating_add(1), Ordering::Release);
    }

    /// The last reading if it is at most `max_age` old.
    pub fn get(&self, max_age: Duration) -> Option<EngineLoad> {
        self.get_at(Instant::now(), max_age)
    }

    pub fn get_at(&self, now: Instant, max_age: Duration) -> Option<EngineLoad> {
        let at = self.at_ms.load(Ordering::Acquire).checked_sub(1)?;
        let age = now.saturating_duration_since(self.epoch).as_millis() as u64;
        if age.saturating_sub(at) > max_age.as_millis() as u64 {
            return None;
        }
        let kv = self.kv_milli.load(Ordering::Relaxed);
        Some(EngineLoad {
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            kv_usage: (kv != u32::MAX).then(|| kv as f32 / 1000.0),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reading_is_used_while_fresh_then_dropped() {
        let cell = LoadCell::default();
        let t0 = Instant::now();
        assert_eq!(cell.get_at(t0, Duration::from_secs(2)), None, "never written");
        let l = EngineLoad { running: 2, waiting: 3, kv_usage: Some(0.4567) };
        cell.set_at(l, t0);
        let got = cell.get_at(t0 + Duration::from_millis(1500), Duration::from_secs(2)).unwrap();
        assert_eq!((got.running, got.waiting, got.pending()), (2, 3, 5));
        assert!((got.kv_usage.unwrap() - 0.457).abs() < 1e-6);
        assert_eq!(cell.get_at(t0 + Duration::from_millis(2500), Duration::from_secs(2)), None, "stale");
        cell.set_at(EngineLoad { kv_usage: None, ..l }, t0 + Duration::from_secs(3));
        let got = cell.get_at(t0 + Duration::from_secs(3), Duration::from_secs(2)).unwrap();
        assert_eq!(got.kv_usage, None, "unknown stays unknown");
    }
}
