//! Unix-millisecond UTC time: the clock, and the hour/day/month window starts that budgets and
//! usage reports use. Calendar arithmetic is Howard Hinnant's `days_from_civil` and its inverse
//! (proleptic Gregorian), so no date library is needed for these few operations.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a (UTC) day; unix time has no leap seconds.
pub const DAY_MS: i64 = 86_400_000;

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_ms() > 1_704_067_200_000);
    }
}
