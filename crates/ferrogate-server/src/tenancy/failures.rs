//! Failed authentication attempts per client address: after `limit` failures within a minute,
//! that address gets 429 until the minute ends — before any key lookup, so guessing keys cannot
//! reach the database at more than `limit` attempts per minute and address.
//!
//! Invariants:
//! - IPv6 clients are counted per /64 (one host usually holds a whole /64 and could otherwise
//!   rotate through addresses freely); IPv4 per address.
//! - The table is bounded: at capacity, windows that have ended are dropped, then a tenth of
//!   the rest, least recently failing first and blocked addresses last — never the whole table,
//!   so flooding it with fresh addresses does not unblock anyone.
//! - Consulted only off the fast path (a key that is not in the cache, a static key that did not
//!   match, the admin API): valid cached keys never take this lock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

const MINUTE_MS: i64 = 60_000;
/// Addresses remembered at most.
const MAX_TRACKED: usize = 100_000;

/// The client-key and admin-key counters: a client guessing tenant keys does not lock the
/// operator out of the admin API, and guessing the master key has its own budget.
pub struct AuthFailures {
    pub clients: FailureLimiter,
    pub admin: FailureLimiter,
}

impl AuthFailures {
    pub fn new(limit: u32) -> Self {
        Self { clients: FailureLimiter::new(limit), admin: FailureLimiter::new(limit) }
    }
}

/// One address's minute.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    failures: u32,
    /// The latest failure: the eviction order (after whether the address is blocked).
    last: i64,
}

pub struct FailureLimiter {
    limit: u32,
    capacity: usize,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// What a failure counts against: the address, or the /64 of an IPv6 address.
fn subject(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX)))
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FailureLimiter {
    pub fn new(limit: u32) -> Self {
        Self::with_capacity(limit, MAX_TRACKED)
    }

    pub fn with_capacity(limit: u32, capacity: usize) -> Self {
        Self { limit, capacity: capacity.max(1), windows: Mutex::new(HashMap::new()) }
    }

    /// `Some(ms until the window ends)` if `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr, now_ms: i64) -> Option<i64> {
        let windows = self.windows.lock().ok()?;
        let w = windows.get(&subject(ip))?;
        (now_ms < w.start + MINUTE_MS && w.failures >= self.limit).then_some(w.start + MINUTE_MS - now_ms)
    }

    /// Counts one failure.
    pub fn record(&self, ip: IpAddr, now_ms: i64) {
        let Ok(mut windows) = self.windows.lock() else { return };
        let key = subject(ip);
        if !windows.contains_key(&key) && windows.len() >= self.capacity {
            make_room(&mut windows, self.capacity, self.limit, now_ms);
        }
        let w = windows.entry(key).or_insert(Window { start: now_ms, failures: 0, last: now_ms });
        if now_ms >= w.start + MINUTE_MS {
            *w = Window { start: now_ms, failures: 0, last: now_ms };
        }
        w.failures = w.failures.saturating_add(1);
        w.last = now_ms;
    }
}

/// Drops the windows that have ended; if that is not enough, a tenth of the table: addresses
/// that are not blocked before blocked ones, each least recently failing first.
fn make_room(windows: &mut HashMap<IpAddr, Window>, capacity: usize, limit: u32, now_ms: i64) {
    windows.retain(|_, w| now_ms < w.start + MINUTE_MS);
    if windows.len() < capacity {
        return;
    }
    let mut order: Vec<(bool, i64, IpAddr)> = windows.iter().map(|(k, w)| (w.failures >= limit, w.last, *k)).collect();
    let evict = (capacity / 10).max(1).min(order.len());
    order.select_nth_unstable(evict - 1);
    for (_, _, k) in &order[..evict] {
        windows.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0; 4]))
    }

    #[test]
    fn blocks_after_the_limit_until_the_minute_ends() {
        let l = FailureLimiter::new(3);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        for t in 0..3 {
            assert_eq!(l.blocked(a, t), None);
            l.record(a, t);
        }
        assert_eq!(l.blocked(a, 10), Some(59_990));
        assert_eq!(l.blocked(b, 10), None, "per IP");
        assert_eq!(l.blocked(a, 60_000), None, "a new minute");
        l.record(a, 60_000);
        assert_eq!(l.blocked(a, 60_001), None);
    }

    /// Issue 17: each IPv6 address had its own budget, so a host rotating through its /64 was
    /// never blocked.
    #[test]
    fn ipv6_is_counted_per_64() {
        let l = FailureLimiter::new(3);
        for (t, a) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"].into_iter().enumerate() {
            l.record(ip(a), i64::try_from(t).unwrap_or(0));
        }
        assert!(l.blocked(ip("2001:db8:1:2::9"), 10).is_some(), "one /64, one budget");
        assert_eq!(l.blocked(ip("2001:db8:1:3::1"), 10), None, "another /64");
        l.record(ip("::ffff:10.0.0.1"), 0);
        assert_eq!(l.blocked(ip("10.0.0.1"), 1), None);
    }

    /// Issue 17: at capacity the whole table was cleared, so flooding it with fresh addresses
    /// unblocked an attacker.
    #[test]
    fn a_full_table_keeps_blocked_addresses() {
        let l = FailureLimiter::with_capacity(3, 100);
        let attacker = ip("192.0.2.1");
        for t in 0..3 {
            l.record(attacker, 1_000 + t);
        }
        for i in 0..1_000u32 {
            l.record(IpAddr::from(i.to_be_bytes()), 2_000 + i64::from(i));
        }
        assert!(l.blocked(attacker, 3_100).is_some(), "the flood came later, yet the attacker stays blocked");
        let size = l.windows.lock().map(|w| w.len()).unwrap_or(0);
        assert!((90..=100).contains(&size), "bounded: {size}");
        assert!(l.blocked(IpAddr::from(999u32.to_be_bytes()), 3_100).is_none());
        let recent = l.windows.lock().map(|w| w.contains_key(&IpAddr::from(999u32.to_be_bytes()))).unwrap_or(false);
        assert!(recent, "the least recent go first");
    }
}
