//! When a failed job runs again: exponential backoff with full jitter, capped (AWS's "full
//! jitter": a uniform draw in `[0, min(cap, base·2^(n−1)))`, which spreads a thundering herd of
//! retries best), or a fixed schedule (the Standard Webhooks one: 5 s, 5 min, 30 min, 2 h, 5 h,
//! 10 h, 10 h). Pure: the random draw comes from an injectable [`Jitter`].

use std::time::Duration;

use super::kinds::JobKind;

/// A uniform random draw in `[0, 1)`; injectable so tests get fixed delays.
pub trait Jitter: Send + Sync {
    /// The draw.
    fn unit(&self) -> f64;
}

/// Fast thread-local randomness (not cryptographic: jitter needs none).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn unit(&self) -> f64 {
        fastrand::f64()
    }
}

/// Always the same draw (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn unit(&self) -> f64 {
        self.0
    }
}

/// The Standard Webhooks retry schedule: the delays before attempts 2, 3, … (27 h 35 min 5 s in
/// all, so delivery is retried for more than 24 h); 8 attempts.
pub const WEBHOOK_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long a failed job waits before its next attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryPolicy {
    /// Full jitter over `min(cap, base·2^(attempt−1))`.
    Exponential {
        /// The first retry's ceiling.
        base: Duration,
        /// No delay exceeds this.
        cap: Duration,
    },
    /// The n-th entry is the delay after attempt n; the last entry repeats.
    Schedule(Vec<Duration>),
}

impl RetryPolicy {
    /// 1 s doubling to at most 5 min.
    pub fn default_exponential() -> Self {
        RetryPolicy::Exponential { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }

    /// The Standard Webhooks schedule.
    pub fn webhooks() -> Self {
        RetryPolicy::Schedule(WEBHOOK_SCHEDULE.to_vec())
    }

    /// The delay after failed attempt `attempt` (1-based), given a draw `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        match self {
            RetryPolicy::Exponential { base, cap } => {
                let shift = attempt.saturating_sub(1).min(32);
                let ceiling = base.saturating_mul(1_u32 << shift.min(31)).min(*cap);
                ceiling.mul_f64(unit.clamp(0.0, 1.0))
            }
            RetryPolicy::Schedule(delays) => {
                let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
                delays.get(i).or(delays.last()).copied().unwrap_or_default()
            }
        }
    }
}

/// The retry policy of each job kind.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicies {
    /// Background responses.
    pub response: RetryPolicy,
    /// Batch lines.
    pub batch_item: RetryPolicy,
    /// Webhook messages.
    pub webhook: RetryPolicy,
}

impl Default for RetryPolicies {
    fn default() -> Self {
        Self {
            response: RetryPolicy::default_exponential(),
            batch_item: RetryPolicy::default_exponential(),
            webhook: RetryPolicy::webhooks(),
        }
    }
}

impl RetryPolicies {
    /// The policy of `kind`.
    pub fn of(&self, kind: JobKind) -> &RetryPolicy {
        match kind {
            JobKind::Response => &self.response,
            JobKind::BatchItem => &self.batch_item,
            JobKind::Webhook => &self.webhook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn exponential_doubles_under_the_cap_and_jitters_fully() {
        let p = RetryPolicy::Exponential { base: S(1), cap: S(60) };
        let top = |n| p.delay(n, 0.999_999_999);
        assert_eq!((top(1).as_millis(), top(2).as_millis(), top(3).as_millis()), (999, 1999, 3999));
        assert_eq!(top(7).as_millis(), 59_999, "64 s capped at 60");
        assert_eq!(top(400).as_millis(), 59_999, "huge attempt numbers do not overflow");
        assert_eq!(p.delay(5, 0.0), Duration::ZERO, "full jitter reaches zero");
        assert_eq!(p.delay(3, 0.5), S(2));
        assert_eq!(p.delay(0, 0.5), Duration::from_millis(500), "attempt 0 reads as 1");
    }

    #[test]
    fn random_jitter_spreads_delays_within_the_ceiling() {
        let p = RetryPolicy::default_exponential();
        let draws: Vec<Duration> = (0..200).map(|_| p.delay(4, RandomJitter.unit())).collect();
        assert!(draws.iter().all(|d| *d < S(8)));
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 150, "draws differ: {}", distinct.len());
    }

    #[test]
    fn the_webhook_schedule_repeats_its_last_step_and_spans_a_day() {
        let p = RetryPolicy::webhooks();
        let delays: Vec<u64> = (1..=9).map(|n| p.delay(n, FixedJitter(0.3).unit()).as_secs()).collect();
        assert_eq!(delays, [5, 300, 1800, 7200, 18_000, 36_000, 36_000, 36_000, 36_000]);
        let total: Duration = WEBHOOK_SCHEDULE.iter().sum();
        assert!(total > S(24 * 3600), "{total:?}");
        assert_eq!(RetryPolicy::Schedule(vec![]).delay(3, 0.5), Duration::ZERO);
        assert_eq!(RetryPolicies::default().of(JobKind::Webhook), &p);
    }
}
