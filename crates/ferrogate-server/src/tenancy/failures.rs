//! Failed authentication attempts per client IP: after `limit` failures within a minute, that IP
//! gets 429 until the minute ends — before any key lookup, so guessing keys cannot reach the
//! database at more than `limit` attempts per minute and IP.
//!
//! Consulted only off the fast path (a key that is not in the cache, or the admin API): valid
//! cached keys never take this lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

const MINUTE_MS: i64 = 60_000;
/// IPs remembered; beyond this, windows that have ended are forgotten first.
const MAX_TRACKED: usize = 100_000;

pub struct FailureLimiter {
    limit: u32,
    /// IP → (window start, failures in it).
    windows: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl FailureLimiter {
    pub fn new(limit: u32) -> Self {
        Self { limit, windows: Mutex::new(HashMap::new()) }
    }

    /// `Some(ms until the window ends)` if `ip` has used up its failures.
    pub fn blocked(&self, ip: IpAddr, now_ms: i64) -> Option<i64> {
        let windows = self.windows.lock().ok()?;
        let &(start, n) = windows.get(&ip)?;
        (now_ms < start + MINUTE_MS && n >= self.limit).then_some(start + MINUTE_MS - now_ms)
    }

    /// Counts one failure.
    pub fn record(&self, ip: IpAddr, now_ms: i64) {
        let Ok(mut windows) = self.windows.lock() else { return };
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, (start, _)| now_ms < *start + MINUTE_MS);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let w = windows.entry(ip).or_insert((now_ms, 0));
        if now_ms >= w.0 + MINUTE_MS {
            *w = (now_ms, 0);
        }
        w.1 = w.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_minute_ends() {
        let l = FailureLimiter::new(3);
        let (a, b): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4])), IpAddr::from([10, 0, 0, 2]));
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
}
