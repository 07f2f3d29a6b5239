//! A circuit breaker per backend: closed (requests flow) → open (fail fast, or the balancer
//! routes elsewhere) on `consecutive_failures` in a row or a failure rate over a sliding window →
//! half-open after `open_for` (a few probe requests) → closed after the probes succeed, or open
//! again when one fails.
//!
//! Invariants: only failures the upstream caused count ([`BackendError::trips_breaker`]: not
//! client errors, not 429/overload, not cancellations); the caller passes the time in, so every
//! transition is a pure function of (state, outcome, now) and tests run on paused time; a probe
//! slot is always given back ([`Ticket`] is resolved or dropped).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::BackendError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Opens after this many upstream failures in a row (0 = never on a streak).
    pub consecutive_failures: u32,
    /// Opens when at least this share of the window's requests failed (0 or above 1 = never)…
    pub failure_rate: f64,
    /// …and the window holds at least this many requests.
    pub min_requests: u32,
    pub window: Duration,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Probe requests in flight at once while half-open; this many successes close it.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(10),
            half_open_probes: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// A closed set, usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (a gauge value).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::HalfOpen,
            2 => BreakerState::Open,
            _ => BreakerState::Closed,
        }
    }
}

/// How one request ended, as far as the backend's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The upstream failed (connect error, 5xx, timeout, garbage).
    Failure,
    /// Says nothing about the backend (client error, 429, cancelled).
    Neutral,
}

impl Outcome {
    pub fn of(e: &BackendError) -> Outcome {
        if e.trips_breaker() { Outcome::Failure } else { Outcome::Neutral }
    }
}

/// Permission to send one request; a probe while half-open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    Normal,
    Probe,
}

/// A point-in-time view, for `/ready` and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub window_requests: u32,
    pub window_failures: u32,
    /// Times it opened since start.
    pub opened_total: u64,
    /// While open: time until probes are let through.
    pub retry_in: Option<Duration>,
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which window slice this bucket counts (slice number since the breaker's epoch).
    slice: u64,
    ok: u32,
    failed: u32,
}

struct Inner {
    state: BreakerState,
    consecutive: u32,
    buckets: [Bucket; BUCKETS],
    opened_at: Instant,
    probes_in_flight: u32,
    probe_successes: u32,
}

pub struct Breaker {
    cfg: BreakerConfig,
    epoch: Instant,
    inner: Mutex<Inner>,
    /// Mirrors `inner.state` for lock-free reads.
    state: AtomicU8,
    opened_total: AtomicU64,
    /// Opens caused by this process's own outcomes (not [`Breaker::force_open`]): what a fleet
    /// shares with the other replicas.
    opened_here: AtomicU64,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        Self {
            cfg,
            epoch: now,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive: 0,
                buckets: [Bucket::default(); BUCKETS],
                opened_at: now,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
            state: AtomicU8::new(BreakerState::Closed.as_gauge()),
            opened_total: AtomicU64::new(0),
            opened_here: AtomicU64::new(0),
        }
    }

    /// How many times this process's own outcomes opened the breaker (forced opens excluded).
    pub fn opened_here(&self) -> u64 {
        self.opened_here.load(Ordering::Relaxed)
    }

    /// Opens the breaker now because another replica saw the backend fail (a shared breaker):
    /// requests fail fast or go elsewhere for `open_for`, then probes decide as usual. An open
    /// breaker is left as it is. `true` if it was closed or half-open.
    pub fn force_open(&self, now: Instant) -> bool {
        let mut g = self.lock();
        if g.state == BreakerState::Open {
            return false;
        }
        g.opened_at = now;
        g.probes_in_flight = 0;
        g.probe_successes = 0;
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        self.set(&mut g, BreakerState::Open);
        true
    }

    /// The state as of the last transition (an open breaker whose wait is over still reads
    /// `Open` until a request probes it).
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Whether [`Breaker::try_acquire`] would give a ticket now (no side effect).
    pub fn available(&self, now: Instant) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open | BreakerState::HalfOpen => {
                let g = self.lock();
                match g.state {
                    BreakerState::Closed => true,
                    BreakerState::Open => now >= g.opened_at + self.cfg.open_for,
                    BreakerState::HalfOpen => g.probes_in_flight < self.cfg.half_open_probes.max(1),
                }
            }
        }
    }

    /// A ticket to send one request, or `None` while open (fail fast).
    pub fn try_acquire(&self, now: Instant) -> Option<Ticket> {
        if self.state() == BreakerState::Closed {
            return Some(Ticket::Normal);
        }
        let mut g = self.lock();
        if g.state == BreakerState::Open && now >= g.opened_at + self.cfg.open_for {
            self.set(&mut g, BreakerState::HalfOpen);
            g.probes_in_flight = 0;
            g.probe_successes = 0;
        }
        match g.state {
            BreakerState::Closed => Some(Ticket::Normal),
            BreakerState::Open => None,
            BreakerState::HalfOpen if g.probes_in_flight < self.cfg.half_open_probes.max(1) => {
                g.probes_in_flight += 1;
                Some(Ticket::Probe)
            }
            BreakerState::HalfOpen => None,
        }
    }

    /// Records how a request sent with `ticket` ended.
    pub fn record(&self, ticket: Ticket, outcome: Outcome, now: Instant) {
        if outcome == Outcome::Neutral && ticket == Ticket::Normal {
            return;
        }
        let mut g = self.lock();
        match ticket {
            Ticket::Probe => self.record_probe(&mut g, outcome, now),
            // Late answers of requests sent before the breaker opened say nothing new.
            Ticket::Normal if g.state != BreakerState::Closed => {}
            Ticket::Normal => self.record_closed(&mut g, outcome, now),
        }
    }

    fn record_probe(&self, g: &mut Inner, outcome: Outcome, now: Instant) {
        if g.state != BreakerState::HalfOpen {
            return;
        }
        g.probes_in_flight = g.probes_in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                g.probe_successes += 1;
                if g.probe_successes >= self.cfg.half_open_probes.max(1) {
                    g.consecutive = 0;
                    g.buckets = [Bucket::default(); BUCKETS];
                    self.set(g, BreakerState::Closed);
                }
            }
            Outcome::Failure => self.open(g, now),
            Outcome::Neutral => {}
        }
    }

    fn record_closed(&self, g: &mut Inner, outcome: Outcome, now: Instant) {
        let slice = self.slice(now);
        let b = &mut g.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice {
            *b = Bucket { slice, ok: 0, failed: 0 };
        }
        if outcome == Outcome::Success {
            b.ok += 1;
            g.consecutive = 0;
            return;
        }
        b.failed += 1;
        g.consecutive += 1;
        let (total, failed) = self.window(g, now);
        let streak = self.cfg.consecutive_failures > 0 && g.consecutive >= self.cfg.consecutive_failures;
        let rate = self.cfg.failure_rate > 0.0
            && self.cfg.failure_rate <= 1.0
            && total >= self.cfg.min_requests.max(1)
            && f64::from(failed) >= self.cfg.failure_rate * f64::from(total);
        if streak || rate {
            self.open(g, now);
        }
    }

    fn open(&self, g: &mut Inner, now: Instant) {
        g.opened_at = now;
        g.probes_in_flight = 0;
        g.probe_successes = 0;
        self.opened_total.fetch_add(1, Ordering::Relaxed);
        self.opened_here.fetch_add(1, Ordering::Relaxed);
        self.set(g, BreakerState::Open);
    }

    fn set(&self, g: &mut Inner, s: BreakerState) {
        g.state = s;
        self.state.store(s.as_gauge(), Ordering::Relaxed);
    }

    fn slice(&self, now: Instant) -> u64 {
        let width = (self.cfg.window / BUCKETS as u32).max(Duration::from_millis(1));
        (now.saturating_duration_since(self.epoch).as_nanos() / width.as_nanos()) as u64
    }

    /// (requests, failures) in the window ending at `now`.
    fn window(&self, g: &Inner, now: Instant) -> (u32, u32) {
        let current = self.slice(now);
        g.buckets
            .iter()
            .filter(|b| b.slice + (BUCKETS as u64) > current && b.slice <= current)
            .fold((0, 0), |(t, f), b| (t + b.ok + b.failed, f + b.failed))
    }

    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let g = self.lock();
        let (window_requests, window_failures) = self.window(&g, now);
        let retry_in =
            (g.state == BreakerState::Open).then(|| (g.opened_at + self.cfg.open_for).saturating_duration_since(now));
        BreakerSnapshot {
            state: g.state,
            consecutive_failures: g.consecutive,
            window_requests,
            window_failures,
            opened_total: self.opened_total.load(Ordering::Relaxed),
            retry_in,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }

    fn run(b: &Breaker, outcome: Outcome) -> Option<Ticket> {
        let t = b.try_acquire(Instant::now())?;
        b.record(t, outcome, Instant::now());
        Some(t)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_a_streak_fails_fast_probes_and_closes() {
        let b = Breaker::new(cfg(), Instant::now());
        run(&b, Outcome::Failure);
        run(&b, Outcome::Failure);
        run(&b, Outcome::Success); // a success resets the streak
        for _ in 0..3 {
            assert!(run(&b, Outcome::Failure).is_some());
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire(Instant::now()).is_none(), "open: fail fast");
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(!b.available(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = b.try_acquire(Instant::now()).unwrap();
        assert_eq!((probe, b.state()), (Ticket::Probe, BreakerState::HalfOpen));
        assert!(b.try_acquire(Instant::now()).is_none(), "one probe at a time");
        b.record(probe, Outcome::Success, Instant::now());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot(Instant::now()).opened_total, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let b = Breaker::new(cfg(), Instant::now());
        for _ in 0..3 {
            run(&b, Outcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(run(&b, Outcome::Failure), Some(Ticket::Probe));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot(Instant::now()).retry_in, Some(Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_gives_its_slot_back() {
        let b = Breaker::new(cfg(), Instant::now());
        for _ in 0..3 {
            run(&b, Outcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let p = b.try_acquire(Instant::now()).unwrap();
        b.record(p, Outcome::Neutral, Instant::now());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.try_acquire(Instant::now()), Some(Ticket::Probe));
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_the_failure_rate_over_the_window() {
        let c = BreakerConfig { consecutive_failures: 0, ..cfg() };
        let b = Breaker::new(c, Instant::now());
        for i in 0..9 {
            run(&b, if i % 2 == 0 { Outcome::Failure } else { Outcome::Success });
        }
        assert_eq!(b.state(), BreakerState::Closed, "fewer than min_requests");
        run(&b, Outcome::Failure); // 10 requests, 6 failed
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let c = BreakerConfig { consecutive_failures: 0, ..cfg() };
        let b = Breaker::new(c, Instant::now());
        for _ in 0..5 {
            run(&b, Outcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..5 {
            run(&b, Outcome::Success);
        }
        run(&b, Outcome::Failure);
        let s = b.snapshot(Instant::now());
        assert_eq!((s.state, s.window_requests, s.window_failures), (BreakerState::Closed, 6, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_outcomes_count_for_nothing() {
        let b = Breaker::new(cfg(), Instant::now());
        for _ in 0..50 {
            run(&b, Outcome::Neutral);
        }
        let s = b.snapshot(Instant::now());
        assert_eq!((s.state, s.window_requests), (BreakerState::Closed, 0));
        let client = BackendError::InvalidRequest { param: None, message: "x".into() };
        let rate = BackendError::Status { status: 429, message: "x".into(), retry_after: None };
        let down = BackendError::Status { status: 502, message: "x".into(), retry_after: None };
        assert_eq!(Outcome::of(&client), Outcome::Neutral);
        assert_eq!(Outcome::of(&rate), Outcome::Neutral);
        assert_eq!(Outcome::of(&down), Outcome::Failure);
        assert_eq!(Outcome::of(&BackendError::Connect("refused".into())), Outcome::Failure);
    }

    #[test]
    fn a_forced_open_fails_fast_then_probes_and_is_not_counted_as_our_own() {
        let t0 = Instant::now();
        let b = Breaker::new(cfg(), t0);
        assert!(b.force_open(t0));
        assert!(!b.force_open(t0), "already open");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire(t0 + Duration::from_secs(1)).is_none(), "fails fast while open");
        assert_eq!((b.opened_here(), b.snapshot(t0).opened_total), (0, 1));
        let probe = b.try_acquire(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(probe, Ticket::Probe);
        b.record(probe, Outcome::Failure, t0 + Duration::from_secs(5));
        assert_eq!(b.opened_here(), 1, "a failed probe of ours is our own open");
    }
}
