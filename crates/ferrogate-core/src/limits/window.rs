//! A sliding window of one period, estimated from two fixed windows (as Cloudflare and most
//! Redis limiters do): `estimate = previous × (share of the previous window still inside the
//! sliding one) + current`. A request of `cost` passes while `estimate + cost <= limit`; an empty
//! window admits any cost. Two counters per key instead of a log of timestamps, so token rates
//! (thousands of units per request) cost the same as request rates.
//!
//! Floating point is used for the weighted estimate only; the same operations in the same order
//! run in Redis's Lua (IEEE doubles), so both stores decide alike.

use super::{Decision, Quota};

/// A window's counts: `window` is `now / period` of the last charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub window: i64,
    pub curr: u64,
    pub prev: u64,
}

/// The counts as seen from window `w` (older windows shift out).
pub fn roll(c: Option<Counts>, w: i64) -> Counts {
    match c {
        Some(c) if c.window == w => c,
        Some(c) if c.window == w - 1 => Counts { window: w, curr: 0, prev: c.curr },
        _ => Counts { window: w, curr: 0, prev: 0 },
    }
}

/// `prev × (period − elapsed) / period + curr`, exactly as the Lua script computes it.
pub fn estimate(c: &Counts, elapsed_us: i64, period_us: i64) -> f64 {
    let weight = (period_us - elapsed_us) as f64 / period_us as f64;
    c.prev as f64 * weight + c.curr as f64
}

/// The decision, and the new counts if admitted.
pub fn check(counts: Option<Counts>, now_us: i64, q: &Quota, cost: u64) -> (Decision, Option<Counts>) {
    let p = q.period_us.max(1);
    let w = now_us.div_euclid(p);
    let start = w * p;
    let elapsed = now_us - start;
    let c = roll(counts, w);
    let est = estimate(&c, elapsed, p);
    let limit = q.limit as f64;
    let empty = c.curr == 0 && c.prev == 0;
    if est + cost as f64 <= limit || empty {
        let new = Counts { curr: c.curr.saturating_add(cost), ..c };
        let d = Decision {
            allowed: true,
            limit: q.limit,
            remaining: floor_units(limit - est - cost as f64),
            reset_us: reset_us(&new, start, p, now_us),
            retry_after_us: 0,
        };
        return (d, Some(new));
    }
    let d = Decision {
        allowed: false,
        limit: q.limit,
        remaining: floor_units(limit - est),
        reset_us: reset_us(&c, start, p, now_us),
        retry_after_us: retry_us(&c, elapsed, p, q.limit, cost).max(1),
    };
    (d, None)
}

fn floor_units(x: f64) -> u64 {
    if x > 0.0 { x.floor() as u64 } else { 0 }
}

/// Until the estimate is 0: the end of the next window if the current one counts anything.
fn reset_us(c: &Counts, start: i64, p: i64, now_us: i64) -> i64 {
    if c.curr > 0 {
        start + 2 * p - now_us
    } else if c.prev > 0 {
        start + p - now_us
    } else {
        0
    }
}

/// Until `cost` would fit, for a refused request.
fn retry_us(c: &Counts, elapsed: i64, p: i64, limit: u64, cost: u64) -> i64 {
    let to_next = p - elapsed;
    if cost > limit {
        // Only an empty window admits it.
        return if c.curr > 0 { to_next + p } else { to_next };
    }
    let room = (limit - cost) as f64;
    let (curr, prev, pf) = (c.curr as f64, c.prev as f64, p as f64);
    if curr <= room && prev > 0.0 {
        // This window, once enough of the previous one has slid out.
        let e = pf - (room - curr) * pf / prev;
        return (e.ceil() as i64 - elapsed).max(1);
    }
    // The next window, where the current count is the previous one.
    let e = pf - room * pf / curr;
    to_next + (e.ceil() as i64).max(0)
}

/// Gives back `units` (takes more if negative) in the window the charge went into, if it is the
/// current or the previous one of the stored counts.
pub fn refund(c: Counts, q: &Quota, units: i64, charged_at_us: i64) -> Counts {
    let w0 = charged_at_us.div_euclid(q.period_us.max(1));
    let apply = |n: u64| if units >= 0 { n.saturating_sub(units.unsigned_abs()) } else { n + units.unsigned_abs() };
    if c.window == w0 {
        Counts { curr: apply(c.curr), ..c }
    } else if c.window == w0 + 1 {
        Counts { prev: apply(c.prev), ..c }
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Algorithm, MINUTE_US};

    /// A window boundary, so tests read in offsets from it.
    const W0: i64 = 28_333_333 * MINUTE_US;

    fn q(limit: u64) -> Quota {
        Quota::per_minute(Algorithm::SlidingWindow, limit)
    }

    fn admit_n(c: &mut Option<Counts>, now: i64, q: &Quota, cost: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                let (d, new) = check(*c, now, q, cost);
                if d.allowed {
                    *c = new;
                }
                d.allowed
            })
            .count()
    }

    #[test]
    fn exactly_the_limit_within_a_window() {
        let q = q(50);
        let mut c = None;
        assert_eq!(admit_n(&mut c, W0 + 1000, &q, 1, 200), 50);
        assert_eq!(admit_n(&mut c, W0 + MINUTE_US - 1, &q, 1, 10), 0);
    }

    #[test]
    fn the_previous_window_slides_out_linearly() {
        let q = q(60);
        let mut c = None;
        assert_eq!(admit_n(&mut c, W0, &q, 1, 60), 60);
        // A quarter into the next window, 3/4 of the previous 60 still count: 15 free.
        let quarter = W0 + MINUTE_US + MINUTE_US / 4;
        let (d, _) = check(c, quarter, &q, 1);
        assert_eq!((d.allowed, d.remaining), (true, 14));
        assert_eq!(admit_n(&mut c, quarter, &q, 1, 100), 15);
        let (d, _) = check(c, quarter, &q, 1);
        assert!(!d.allowed);
        // 1 s later one more unit of the previous window has slid out.
        assert_eq!(d.retry_after_us, 1_000_000);
        assert_eq!(admit_n(&mut c, quarter + 999_999, &q, 1, 1), 0);
        assert_eq!(admit_n(&mut c, quarter + 1_000_000, &q, 1, 2), 1);
    }

    #[test]
    fn a_full_current_window_waits_for_the_next() {
        let q = q(10);
        let mut c = None;
        let now = W0 + MINUTE_US / 2;
        assert_eq!(admit_n(&mut c, now, &q, 1, 20), 10);
        let (d, _) = check(c, now, &q, 1);
        // Next window: 10 × (1 − e/60 s) + 1 <= 10 from e = 6 s on.
        assert_eq!(d.retry_after_us, MINUTE_US / 2 + 6_000_000);
        assert_eq!(d.reset_us, MINUTE_US / 2 + MINUTE_US);
        assert_eq!(admit_n(&mut c, now + d.retry_after_us - 1, &q, 1, 1), 0);
        assert_eq!(admit_n(&mut c, now + d.retry_after_us, &q, 1, 1), 1);
    }

    #[test]
    fn refunds_touch_only_the_window_charged() {
        let q = q(1000);
        let mut c = None;
        assert_eq!(admit_n(&mut c, W0 + 10, &q, 600, 2), 1);
        let Some(counts) = c else { unreachable!() };
        let back = refund(counts, &q, 500, W0 + 10);
        assert_eq!(back.curr, 100);
        // Charged in the previous window: corrects `prev`.
        let (_, next) = check(Some(counts), W0 + MINUTE_US + 5, &q, 1);
        let Some(next) = next else { unreachable!() };
        assert_eq!(refund(next, &q, 500, W0 + 10).prev, 100);
        // Older than that: nothing left to correct.
        let (_, later) = check(Some(next), W0 + 2 * MINUTE_US + 5, &q, 1);
        let Some(later) = later else { unreachable!() };
        assert_eq!(refund(later, &q, 500, W0 + 10), later);
    }

    #[test]
    fn an_empty_window_admits_a_cost_above_the_limit() {
        let q = q(100);
        let (d, c) = check(None, W0, &q, 250);
        assert!(d.allowed);
        let (d, _) = check(c, W0 + 1, &q, 250);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 2 * MINUTE_US - 1, "until both windows are empty");
    }
}
