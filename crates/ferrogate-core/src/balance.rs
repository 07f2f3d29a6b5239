//! Spreading requests over a deployment's targets, and retrying them within bounds.
//!
//! Picking is weighted power-of-two-choices on outstanding requests: draw two distinct targets
//! with probability proportional to their weights, keep the one with fewer requests in flight
//! per unit of weight. It avoids herding onto one "least loaded" target that every gateway
//! instance sees at once, and needs no global state. Only targets whose breaker lets a request
//! through are candidates; healthy ones are preferred while any is healthy.
//!
//! Retries are bounded twice: by attempts per request and by a [`RetryBudget`] shared by the
//! deployment, a token bucket that earns `ratio` of a retry per first attempt — so retries add
//! at most `ratio` extra load (plus a small burst) however hard the backends fail.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// One candidate as the picker sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub weight: u32,
    pub inflight: usize,
    /// Its breaker lets a request through now.
    pub available: bool,
    pub healthy: bool,
    /// Already tried by this request.
    pub tried: bool,
}

/// The index of the target to use, or `None` when every breaker is open. Untried targets are
/// preferred (a retry goes to another backend when there is one), then healthy ones.
pub fn pick(cands: &[Candidate], rng: &mut fastrand::Rng) -> Option<usize> {
    let eligible = eligible(cands)?;
    Some(two_choices(cands, &eligible, rng))
}

/// The candidates a pick chooses among: available ones, untried and healthy if any are, then
/// untried, then healthy, then any. `None` when no breaker lets a request through.
pub fn eligible(cands: &[Candidate]) -> Option<Vec<usize>> {
    let pool = |f: &dyn Fn(&Candidate) -> bool| -> Vec<usize> {
        cands.iter().enumerate().filter(|(_, c)| c.available && f(c)).map(|(i, _)| i).collect()
    };
    let prefs: [&dyn Fn(&Candidate) -> bool; 4] =
        [&|c| !c.tried && c.healthy, &|c| !c.tried, &|c| c.healthy, &|_| true];
    prefs.iter().map(|f| pool(*f)).find(|p| !p.is_empty())
}

fn two_choices(cands: &[Candidate], eligible: &[usize], rng: &mut fastrand::Rng) -> usize {
    let first = weighted(cands, eligible, None, rng);
    if eligible.len() == 1 {
        return first;
    }
    let second = weighted(cands, eligible, Some(first), rng);
    let load = |i: usize| (cands[i].inflight as f64 + 1.0) / f64::from(cands[i].weight.max(1));
    if load(second) < load(first) { second } else { first }
}

/// A draw from `eligible` (minus `skip`) with probability proportional to weight.
fn weighted(cands: &[Candidate], eligible: &[usize], skip: Option<usize>, rng: &mut fastrand::Rng) -> usize {
    let w = |i: &usize| u64::from(cands[*i].weight.max(1));
    let total: u64 = eligible.iter().filter(|i| Some(**i) != skip).map(w).sum();
    let mut x = rng.u64(0..total.max(1));
    for i in eligible.iter().filter(|i| Some(**i) != skip) {
        if x < w(i) {
            return *i;
        }
        x -= w(i);
    }
    eligible[0]
}

/// How much a deployment may retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts per request after the first (0 = no retries).
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Retries earned per first attempt (0.2 = at most 20% extra load).
    pub budget_ratio: f64,
    /// Retries that may be spent at once, also the bucket's starting content.
    pub budget_burst: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            budget_ratio: 0.2,
            budget_burst: 10,
        }
    }
}

impl RetryPolicy {
    /// Wait before retry number `n` (1-based): exponential, with "equal jitter" — half fixed,
    /// half random — so retries of many clients do not line up.
    pub fn backoff(&self, n: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = self.backoff_base.saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let cap = exp.min(self.backoff_max);
        let half = cap / 2;
        half + half.mul_f64(rng.f64())
    }
}

/// A token bucket of retries, in thousandths of a retry.
#[derive(Debug)]
pub struct RetryBudget {
    milli: AtomicI64,
    earn: i64,
    cap: i64,
}

impl RetryBudget {
    pub fn new(p: &RetryPolicy) -> Self {
        let cap = i64::from(p.budget_burst) * 1000;
        Self { milli: AtomicI64::new(cap), earn: (p.budget_ratio.clamp(0.0, 100.0) * 1000.0) as i64, cap }
    }

    /// A first attempt was made: earn a share of a retry.
    pub fn deposit(&self) {
        let _ = self.milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some((v + self.earn).min(self.cap)));
    }

    /// Spends one retry if the bucket holds one.
    pub fn try_withdraw(&self) -> bool {
        self.milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| (v >= 1000).then_some(v - 1000)).is_ok()
    }

    /// Retries available now (for metrics).
    pub fn available(&self) -> f64 {
        self.milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(weight: u32, inflight: usize) -> Candidate {
        Candidate { weight, inflight, available: true, healthy: true, tried: false }
    }

    #[test]
    fn outstanding_requests_follow_the_weights() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut cands = [c(3, 0), c(1, 0), c(2, 0)];
        for _ in 0..600 {
            let i = pick(&cands, &mut rng).unwrap();
            cands[i].inflight += 1;
        }
        let got: Vec<usize> = cands.iter().map(|c| c.inflight).collect();
        for (i, want) in [300, 100, 200].into_iter().enumerate() {
            assert!(got[i].abs_diff(want) <= 30, "{got:?}");
        }
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let mut rng = fastrand::Rng::with_seed(1);
        let cands = [c(1, 5), c(1, 0)];
        for _ in 0..50 {
            assert_eq!(pick(&cands, &mut rng), Some(1));
        }
    }

    #[test]
    fn open_breakers_are_skipped_and_retries_prefer_untried_targets() {
        let mut rng = fastrand::Rng::with_seed(2);
        let mut cands = [c(1, 0), c(1, 9), c(1, 0)];
        cands[0].available = false;
        cands[2].tried = true;
        for _ in 0..20 {
            assert_eq!(pick(&cands, &mut rng), Some(1), "untried beats less loaded");
        }
        cands[1].available = false;
        assert_eq!(pick(&cands, &mut rng), Some(2), "the tried one is still better than none");
        cands[2].available = false;
        assert_eq!(pick(&cands, &mut rng), None);
    }

    #[test]
    fn unhealthy_targets_are_used_only_when_no_healthy_one_is_left() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut cands = [c(1, 0), c(1, 4)];
        cands[0].healthy = false;
        for _ in 0..20 {
            assert_eq!(pick(&cands, &mut rng), Some(1));
        }
        cands[1].healthy = false;
        assert!(pick(&cands, &mut rng).is_some());
    }

    #[test]
    fn the_budget_allows_the_burst_then_the_ratio() {
        let p = RetryPolicy { budget_ratio: 0.2, budget_burst: 2, ..RetryPolicy::default() };
        let b = RetryBudget::new(&p);
        assert!(b.try_withdraw() && b.try_withdraw());
        assert!(!b.try_withdraw(), "burst spent");
        let mut granted = 0;
        for _ in 0..100 {
            b.deposit();
            granted += u32::from(b.try_withdraw());
        }
        assert_eq!(granted, 20, "20% of 100 first attempts");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(4);
        let d1 = p.backoff(1, &mut rng);
        assert!(d1 >= Duration::from_micros(12_500) && d1 <= Duration::from_millis(25), "{d1:?}");
        let d3 = p.backoff(3, &mut rng);
        assert!(d3 >= Duration::from_millis(50) && d3 <= Duration::from_millis(100), "{d3:?}");
        let d20 = p.backoff(20, &mut rng);
        assert!(d20 >= Duration::from_millis(250) && d20 <= Duration::from_millis(500), "{d20:?}");
        let spread: std::collections::HashSet<_> = (0..10).map(|_| p.backoff(2, &mut rng)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
