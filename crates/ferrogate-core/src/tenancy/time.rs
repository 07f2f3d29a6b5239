//! Unix-millisecond UTC time: the clock (injectable, so budget windows and key expiry are tested
//! without waiting), and the hour/day/month window starts that budgets and usage reports use.
//! Calendar arithmetic is the protocol crate's `calendar` (Howard Hinnant's `days_from_civil` and
//! its inverse, proleptic Gregorian), so no date library is needed for these few operations.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ferrogate_protocol::calendar::{civil_from_days, days_from_civil};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a (UTC) day; unix time has no leap seconds.
pub const DAY_MS: i64 = 86_400_000;

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A source of "now" in unix milliseconds. The server reads time only through one, so tests can
/// move it (a budget's reset at midnight, a key's expiry) instead of sleeping.
pub trait Clock: Send + Sync {
    /// Now, unix ms.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    /// Shows `ms` from now on.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Start of the UTC hour containing `ms`.
pub fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// Start of the UTC day containing `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

/// Start of the UTC calendar month containing `ms`.
pub fn month_start(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(y, m, 1) * DAY_MS
}

/// `YYYY-MM-DD` of the UTC day containing `ms`.
pub fn format_day(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:00Z` of the UTC hour containing `ms` (RFC 3339 without seconds).
pub fn format_hour(ms: i64) -> String {
    let hour = ms.rem_euclid(DAY_MS) / HOUR_MS;
    format!("{}T{hour:02}:00Z", format_day(ms))
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds) of `ms`.
pub fn format_datetime(ms: i64) -> String {
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    format!("{}T{:02}:{:02}:{:02}Z", format_day(ms), secs / 3600, secs / 60 % 60, secs % 60)
}

/// Reads a time as unix ms: an integer (unix ms), `YYYY-MM-DD` (UTC midnight) or
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]Z` (UTC). `None` for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let (date, rest) = match s.split_once('T') {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let num = |p: Option<&str>, len: usize| p.filter(|p| p.len() == len).and_then(|p| p.parse::<i64>().ok());
    let (y, m, d) = (num(parts.next(), 4)?, num(parts.next(), 2)?, num(parts.next(), 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * DAY_MS;
    if civil_from_days(day_ms / DAY_MS) != (y, m, d) {
        return None; // 2023-02-30
    }
    let Some(rest) = rest else { return Some(day_ms) };
    let clock = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z'))?;
    let (hms, frac) = clock.split_once('.').map_or((clock, None), |(a, b)| (a, Some(b)));
    let mut f = hms.split(':');
    let (h, min) = (num(f.next(), 2)?, num(f.next(), 2)?);
    let sec = match f.next() {
        Some(s) => num(Some(s), 2)?,
        None => 0,
    };
    let ms = match frac {
        Some(fr) if !fr.is_empty() && fr.len() <= 9 && fr.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{fr:0<3}")[..3].parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    if f.next().is_some() || h > 23 || min > 59 || sec > 59 {
        return None;
    }
    Some(day_ms + ((h * 60 + min) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-02-29T13:45:10.123Z (a leap day).
    const LEAP: i64 = 1_709_214_310_123;

    #[test]
    fn window_starts() {
        assert_eq!(hour_start(LEAP), 1_709_211_600_000);
        assert_eq!(day_start(LEAP), 1_709_164_800_000);
        assert_eq!(month_start(LEAP), 1_706_745_600_000); // 2024-02-01
        assert_eq!(month_start(1_709_251_200_000), 1_709_251_200_000); // 2024-03-01 is its own start
        assert_eq!(month_start(1_735_689_599_999), 1_733_011_200_000); // 2024-12-31T23:59:59.999 → 12-01
        assert_eq!(month_start(0), 0);
        assert_eq!(day_start(-1), -DAY_MS, "before 1970 still floors");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_day(LEAP), "2024-02-29");
        assert_eq!(format_hour(LEAP), "2024-02-29T13:00Z");
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn parse_and_format_datetimes() {
        assert_eq!(parse_time("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_time("2024-02-29T13:45:10.123Z"), Some(LEAP));
        assert_eq!(parse_time("2024-02-29T13:45Z"), Some(LEAP - LEAP % 60_000));
        assert_eq!(parse_time("1709214310123"), Some(LEAP));
        for bad in ["", "2024-02-30", "2024-13-01", "2024-2-1", "2024-02-29T25:00Z", "2024-02-29T13:45:10", "yesterday"]
        {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(format_datetime(LEAP), "2024-02-29T13:45:10Z");
        assert_eq!(parse_time(&format_datetime(LEAP)), Some(LEAP - 123));
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(5);
        c.advance(10);
        assert_eq!(c.now_ms(), 15);
        c.set(1);
        assert_eq!(c.now_ms(), 1);
        assert!(SystemClock.now_ms() > 1_704_067_200_000);
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_ms() > 1_704_067_200_000);
    }
}
