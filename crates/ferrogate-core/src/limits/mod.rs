//! Rate limits: the pure semantics (GCRA and a sliding window), the [`LimitStore`] trait that
//! holds counters (in process here in [`memory`], in Redis in `ferrogate-store`), and the types a
//! check is made of. See docs/GOVERNANCE.md.
//!
//! Semantics, identical in every store (one behaviour suite runs against each):
//! - A check names counters ([`Check`]: a key, its [`Quota`] and a cost). [`LimitStore::acquire`]
//!   admits only if *every* counter has room, and then charges all of them at once; a refusal
//!   charges nothing. Atomic per call: concurrent callers (and gateway replicas sharing a store)
//!   never both take the last unit.
//! - Time is the store's own (the process clock in memory, `TIME` inside Redis), so clock skew
//!   between gateways does not matter.
//! - A charge can be corrected later ([`LimitStore::release`]): tokens are reserved at admission
//!   (prompt estimate + `max_tokens`) and the unused part is given back when the request settles.
//!
//! Pure: [`gcra`] and [`window`] take the state and the time as arguments and return the new state.

pub mod gcra;
pub mod memory;
pub mod window;

use async_trait::async_trait;

/// What a request gets while a shared store (rate limits, budgets) cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Admit without the store's limits (logged and counted).
    FailOpen,
    /// Refuse with 503 (logged and counted).
    FailClosed,
}

impl FailurePolicy {
    /// `"fail_open"` or `"fail_closed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "fail_open",
            FailurePolicy::FailClosed => "fail_closed",
        }
    }
}

/// Microseconds in a minute: rates are configured per minute.
pub const MINUTE_US: i64 = 60_000_000;

/// What a counter counts. A subject (a rule's scope value, a key, a tenant) has up to one counter
/// of each, under one store key: a check names the key and the dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Requests,
    Tokens,
}

impl Dim {
    /// Both, in slot order.
    pub const ALL: [Dim; 2] = [Dim::Requests, Dim::Tokens];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Requests => "requests",
            Dim::Tokens => "tokens",
        }
    }

    /// The counter's slot under its key: 0 for requests, 1 for tokens.
    pub fn slot(self) -> usize {
        match self {
            Dim::Requests => 0,
            Dim::Tokens => 1,
        }
    }
}

/// How a counter refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a token bucket of `burst` units refilled evenly at
    /// `limit` per period, kept as one timestamp (the theoretical arrival time).
    Gcra,
    /// A sliding window of one period, estimated from the current and the previous fixed window
    /// (the previous one weighted by how much of it still overlaps). No burst beyond `limit`.
    SlidingWindow,
}

impl Algorithm {
    /// `"gcra"` or `"sliding_window"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }
}

/// A rate: `limit` units per `period_us`, with bursts up to `burst` units (GCRA only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub algorithm: Algorithm,
    /// Units per period (requests or tokens). At least 1.
    pub limit: u64,
    /// The bucket's size (GCRA): how many units may be spent at once. Ignored by the window.
    pub burst: u64,
    /// The period, µs (a minute for the configured rates).
    pub period_us: i64,
}

impl Quota {
    /// `limit` per minute, bursts of up to a minute's allowance.
    pub fn per_minute(algorithm: Algorithm, limit: u64) -> Self {
        Self { algorithm, limit: limit.max(1), burst: limit.max(1), period_us: MINUTE_US }
    }

    /// With a different burst (GCRA).
    pub fn with_burst(self, burst: u64) -> Self {
        Self { burst: burst.max(1), ..self }
    }

    /// `n` units expressed as time at this rate: `n × period / limit` µs, rounded down.
    pub fn units_us(&self, n: u64) -> i64 {
        let us = u128::from(n) * u128::from(self.period_us.unsigned_abs()) / u128::from(self.limit.max(1));
        i64::try_from(us).unwrap_or(i64::MAX / 4)
    }

    /// `us` of refill expressed as units at this rate, rounded down.
    pub fn us_units(&self, us: i64) -> u64 {
        let us = u128::from(us.max(0).unsigned_abs());
        let n = us * u128::from(self.limit) / u128::from(self.period_us.unsigned_abs().max(1));
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

/// One counter to check and charge: the counter `dim` of the subject `key`. A check names each
/// counter once; both counters of a key use the same algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The subject's store key, unique per rule and scope value (e.g. `r:per-ip:ip:10.0.0.7`).
    pub key: String,
    pub dim: Dim,
    pub quota: Quota,
    /// Units this request takes: 1 for a request, the reservation for tokens.
    pub cost: u64,
}

/// What one counter says about a request; the source of the rate-limit headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Units per period.
    pub limit: u64,
    /// Units still available after this request (before it, if refused).
    pub remaining: u64,
    /// Until the counter is fully replenished, µs.
    pub reset_us: i64,
    /// Until this request's cost would fit, µs (0 when allowed).
    pub retry_after_us: i64,
}

/// The answer to [`LimitStore::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// Every counter had room, and all were charged.
    pub allowed: bool,
    /// The store's time of the check, µs (a reservation's window, for [`Refund`]).
    pub now_us: i64,
    /// One per check, in order. When refused, each says whether it alone would have passed.
    pub decisions: Vec<Decision>,
}

/// Gives back (`units > 0`) or charges more (`units < 0`) on a counter charged at `charged_at_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub key: String,
    pub dim: Dim,
    pub quota: Quota,
    pub units: i64,
    /// The store time of the charge ([`Acquired::now_us`]): a sliding window corrects only the
    /// window the charge went into, if it still counts.
    pub charged_at_us: i64,
}

/// A store could not answer (unreachable, timed out, protocol error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct LimitError(pub String);

/// Where counters live. Implementations: [`memory::MemoryLimitStore`] (one process) and the
/// Redis store in `ferrogate-store` (shared by replicas).
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Checks every counter and, only if all have room, charges them all, atomically.
    async fn acquire(&self, checks: &[Check]) -> Result<Acquired, LimitError>;

    /// Applies corrections (fire and forget: a store that must do I/O does it off the caller's
    /// path and logs failures; a lost refund only makes a limit stricter for a moment).
    fn release(&self, refunds: Vec<Refund>);

    /// `"memory"` or `"redis"`, for logs.
    fn kind(&self) -> &'static str;

    /// Corrections that could not be applied (the store was unreachable) since start.
    fn failed_refunds(&self) -> u64 {
        0
    }

    /// Waits for corrections still in flight (graceful shutdown).
    async fn shutdown(&self) {}
}

/// A counter's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// GCRA's theoretical arrival time, unix µs.
    Gcra { tat_us: i64 },
    /// A sliding window: the index of the current fixed window (`now / period`), its count and
    /// the previous window's.
    Window { window: i64, curr: u64, prev: u64 },
}

/// Checks one counter: its decision, and its new state if the request is admitted.
pub fn check(state: Option<State>, now_us: i64, quota: &Quota, cost: u64) -> (Decision, Option<State>) {
    match quota.algorithm {
        Algorithm::Gcra => {
            let tat = match state {
                Some(State::Gcra { tat_us }) => Some(tat_us),
                _ => None,
            };
            let (d, new) = gcra::check(tat, now_us, quota, cost);
            (d, new.map(|tat_us| State::Gcra { tat_us }))
        }
        Algorithm::SlidingWindow => {
            let w = match state {
                Some(State::Window { window, curr, prev }) => Some(window::Counts { window, curr, prev }),
                _ => None,
            };
            let (d, new) = window::check(w, now_us, quota, cost);
            (d, new.map(|c| State::Window { window: c.window, curr: c.curr, prev: c.prev }))
        }
    }
}

/// Applies a [`Refund`] to a counter's state (`None` if the state no longer counts anything).
pub fn refund(state: State, r: &Refund) -> State {
    match state {
        State::Gcra { tat_us } => State::Gcra { tat_us: gcra::refund(tat_us, &r.quota, r.units) },
        State::Window { window, curr, prev } => {
            let c = window::refund(window::Counts { window, curr, prev }, &r.quota, r.units, r.charged_at_us);
            State::Window { window: c.window, curr: c.curr, prev: c.prev }
        }
    }
}

/// How long a counter must be kept after `now_us` before it would read as empty anyway, µs.
pub fn ttl_us(state: &State, quota: &Quota, now_us: i64) -> i64 {
    match state {
        State::Gcra { tat_us } => (tat_us - now_us).max(0),
        State::Window { window, .. } => (window + 2) * quota.period_us - now_us,
    }
}
