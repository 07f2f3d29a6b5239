//! GCRA (generic cell rate algorithm): a token bucket kept as one number, the theoretical arrival
//! time `tat`. Each unit advances `tat` by `period / limit`; a request of `cost` units passes
//! while `tat` stays within `burst` units of now. A bucket that is full (`tat <= now`) admits any
//! cost, so a token reservation larger than the whole burst is not refused forever.

use super::{Decision, Quota};

/// The decision, and the new `tat` if admitted. `tat`: `None` for a counter never charged.
pub fn check(tat: Option<i64>, now_us: i64, q: &Quota, cost: u64) -> (Decision, Option<i64>) {
    let base = tat.unwrap_or(now_us).max(now_us);
    let tolerance = q.units_us(q.burst);
    let new = base.saturating_add(q.units_us(cost));
    let full = base == now_us;
    if new - now_us <= tolerance || full {
        let d = Decision {
            allowed: true,
            limit: q.limit,
            remaining: q.us_units(tolerance - (new - now_us)),
            reset_us: new - now_us,
            retry_after_us: 0,
        };
        return (d, Some(new));
    }
    let d = Decision {
        allowed: false,
        limit: q.limit,
        remaining: q.us_units(tolerance - (base - now_us)),
        reset_us: base - now_us,
        // Whichever comes first: room for the cost, or a full bucket (which admits any cost).
        retry_after_us: (new - now_us - tolerance).min(base - now_us),
    };
    (d, None)
}

/// Gives back `units` (takes more if negative).
pub fn refund(tat: i64, q: &Quota, units: i64) -> i64 {
    let us = q.units_us(units.unsigned_abs());
    if units >= 0 { tat.saturating_sub(us) } else { tat.saturating_add(us) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Algorithm, MINUTE_US};

    const T0: i64 = 1_700_000_000_000_000;

    fn q(limit: u64) -> Quota {
        Quota::per_minute(Algorithm::Gcra, limit)
    }

    /// Runs `n` checks of `cost` at `now`, keeping the state; how many passed.
    fn admit_n(tat: &mut Option<i64>, now: i64, q: &Quota, cost: u64, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                let (d, new) = check(*tat, now, q, cost);
                if d.allowed {
                    *tat = new;
                }
                d.allowed
            })
            .count()
    }

    #[test]
    fn a_minutes_allowance_in_a_burst_then_one_per_interval() {
        let q = q(50);
        let mut tat = None;
        assert_eq!(admit_n(&mut tat, T0, &q, 1, 200), 50, "exactly the burst at one instant");
        let (d, _) = check(tat, T0, &q, 1);
        assert_eq!((d.remaining, d.retry_after_us, d.reset_us), (0, 1_200_000, MINUTE_US));
        assert_eq!(admit_n(&mut tat, T0 + 1_199_999, &q, 1, 1), 0, "not a µs early");
        assert_eq!(admit_n(&mut tat, T0 + 1_200_000, &q, 1, 5), 1, "one slot per 1.2 s");
        assert_eq!(admit_n(&mut tat, T0 + 2 * MINUTE_US, &q, 1, 200), 50, "full again after idling");
    }

    #[test]
    fn a_smaller_burst_spreads_the_rate() {
        let q = q(60).with_burst(5);
        let mut tat = None;
        assert_eq!(admit_n(&mut tat, T0, &q, 1, 100), 5);
        assert_eq!(admit_n(&mut tat, T0 + 1_000_000, &q, 1, 100), 1);
        // Over a minute: the burst plus one per second.
        let passed: usize = (0..60).map(|s| admit_n(&mut tat, T0 + (2 + s) * 1_000_000, &q, 1, 10)).sum();
        assert_eq!(passed, 60);
    }

    #[test]
    fn remaining_and_reset_follow_the_bucket() {
        let q = q(600);
        let (d, tat) = check(None, T0, &q, 100);
        assert_eq!((d.allowed, d.remaining, d.reset_us), (true, 500, 10_000_000));
        let (d, _) = check(tat, T0 + 5_000_000, &q, 1);
        assert_eq!((d.remaining, d.reset_us), (549, 5_100_000));
    }

    #[test]
    fn tokens_reserve_and_refund() {
        let q = q(1000);
        let mut tat = None;
        assert_eq!(admit_n(&mut tat, T0, &q, 400, 5), 2, "two reservations of 400 fit in 1000");
        let Some(t) = tat else { unreachable!() };
        tat = Some(refund(t, &q, 300)); // the first used 100 of its 400
        assert_eq!(admit_n(&mut tat, T0, &q, 400, 5), 1, "the refund made room for one more");
        let (d, _) = check(tat, T0, &q, 1);
        assert_eq!(d.remaining, 100 - 1 + 1 - 1);
        // Overuse charges more (a provider counted more than the reservation).
        let Some(t) = tat else { unreachable!() };
        tat = Some(refund(t, &q, -100));
        assert!(!check(tat, T0, &q, 1).0.allowed);
    }

    #[test]
    fn a_cost_above_the_burst_passes_only_on_a_full_bucket() {
        let q = q(100);
        let (d, tat) = check(None, T0, &q, 500);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = check(tat, T0 + MINUTE_US, &q, 500);
        assert!(!d.allowed, "4 minutes of debt left");
        assert_eq!(d.retry_after_us, 4 * MINUTE_US);
        assert!(check(tat, T0 + 5 * MINUTE_US, &q, 500).0.allowed);
    }

    #[test]
    fn uneven_intervals_never_admit_more_than_the_burst() {
        for limit in [1_u64, 3, 7, 13, 49, 50, 97, 1000, 7919] {
            let q = q(limit);
            let mut tat = None;
            let n = usize::try_from(limit).unwrap_or(0);
            assert_eq!(admit_n(&mut tat, T0, &q, 1, n + 10), n, "limit {limit}");
        }
    }
}
