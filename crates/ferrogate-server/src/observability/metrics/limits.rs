//! The limits concern: the limiter's snapshot (refusals by scope, store failures), pushed by the
//! sampler, and refusals counted where they happen.

use super::*;

impl Metrics {
    /// A request refused by a rate or concurrency limit; `scope` ∈ [`RATE_LIMIT_SCOPES`].
    pub fn rate_limited(&self, scope: &'static str) {
        self.counter(RATE_LIMITED, vec![slabel("scope", scope)]).increment(1);
    }

    /// Adds to `RATE_LIMITED{scope}` what a source's running `total` gained since `seen`: the
    /// series sums two sources (limiter and concurrency refusals), so neither can set it.
    pub(super) fn add_rate_limited(&self, scope: &'static str, seen: &std::sync::atomic::AtomicU64, total: u64) {
        let prev = seen.swap(total, std::sync::atomic::Ordering::Relaxed);
        if total > prev {
            self.counter(RATE_LIMITED, vec![slabel("scope", scope)]).increment(total - prev);
        }
    }

    /// The rate limiter's refusals by scope, and its store failures (totals since start).
    pub fn set_limiter(&self, s: &crate::limits::LimiterSnapshot) {
        let by_scope = crate::limits::SCOPE_CLASSES.iter().zip(s.limited_by_scope).zip(&self.seen_limited);
        for ((scope, total), seen) in by_scope {
            self.add_rate_limited(scope, seen, total);
        }
        for (policy, n) in [("open", s.failed_open), ("closed", s.failed_closed)] {
            self.counter(LIMITER_STORE_ERRORS, vec![slabel("policy", policy)]).absolute(n);
        }
    }
}
