//! Rate-limit response headers, on 200s and 429s alike, for the most restrictive counter of each
//! kind (the one with the least remaining; on a tie, the longest reset):
//! - OpenAI's: `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`,
//!   `x-ratelimit-reset-requests` and the `-tokens` trio; resets as Go durations (`1s`, `6m0s`,
//!   `120ms`): the time until the counter is fully replenished.
//! - The seeds': `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (whole seconds
//!   until fully replenished), for requests if a request rate applies, else for tokens.
//!
//! `limits::layer` resolves the client address for the request (`RequestCx::limits`) and writes
//! the headers the pipeline's admission left there onto whatever response goes out.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ferrogate_core::limits::{Decision, Dim};

/// One kind's most restrictive counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Line>,
    pub tokens: Option<Line>,
}

impl RateHeaders {
    pub fn from_decisions<'a>(decisions: impl Iterator<Item = (Dim, &'a Decision)>) -> Self {
        let mut h = RateHeaders::default();
        for (dim, d) in decisions {
            let line = Line {
                limit: d.limit,
                remaining: d.remaining,
                reset: Duration::from_micros(d.reset_us.max(0).unsigned_abs()),
            };
            let slot = match dim {
                Dim::Requests => &mut h.requests,
                Dim::Tokens => &mut h.tokens,
            };
            let tighter = slot.is_none_or(|s| {
                (line.remaining, std::cmp::Reverse(line.reset)) < (s.remaining, std::cmp::Reverse(s.reset))
            });
            if tighter {
                *slot = Some(line);
            }
        }
        h
    }

    pub fn write(&self, headers: &mut HeaderMap) {
        for (names, line) in [(REQUEST_HEADERS, self.requests), (TOKEN_HEADERS, self.tokens)] {
            let Some(l) = line else { continue };
            let [limit, remaining, reset] = names;
            headers.insert(limit, l.limit.into());
            headers.insert(remaining, l.remaining.into());
            if let Ok(v) = HeaderValue::try_from(go_duration(l.reset)) {
                headers.insert(reset, v);
            }
        }
        if let Some(l) = self.requests.or(self.tokens) {
            let [limit, remaining, reset] = SEED_HEADERS;
            headers.insert(limit, l.limit.into());
            headers.insert(remaining, l.remaining.into());
            headers.insert(reset, l.reset.as_secs().saturating_add(u64::from(l.reset.subsec_nanos() > 0)).into());
        }
    }
}

/// OpenAI's limit, remaining and reset headers for requests and for tokens, then the seeds'.
const REQUEST_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKEN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];
const SEED_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
];

/// A duration as Go prints it, to the millisecond: `0s`, `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(120)), "120ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(ms(6_996)), "6.996s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_450)), "1h2m3.45s");
    }

    #[test]
    fn the_tightest_counter_of_each_kind_is_shown() {
        let d = |limit, remaining, reset_us| Decision { allowed: true, limit, remaining, reset_us, retry_after_us: 0 };
        let (a, b, t) = (d(100, 40, 1_000_000), d(10, 3, 500_000), d(1000, 900, 6_000_000));
        let h = RateHeaders::from_decisions([(Dim::Requests, &a), (Dim::Requests, &b), (Dim::Tokens, &t)].into_iter());
        let mut m = HeaderMap::new();
        h.write(&mut m);
        let get = |n: &str| m.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!(get("x-ratelimit-limit-requests"), "10");
        assert_eq!(get("x-ratelimit-remaining-requests"), "3");
        assert_eq!(get("x-ratelimit-reset-requests"), "500ms");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "900");
        assert_eq!(get("x-ratelimit-reset-tokens"), "6s");
        assert_eq!(
            (get("x-ratelimit-limit"), get("x-ratelimit-remaining"), get("x-ratelimit-reset")),
            ("10".into(), "3".into(), "1".into())
        );
    }
}
