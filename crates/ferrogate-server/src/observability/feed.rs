//! The live dashboard's memory: the last [`CAPACITY`] finished requests (metadata only — never
//! prompt or response text, never keys) and the aggregates computed from them: request rate,
//! latency and TTFT percentiles, tokens/s, errors, top tenants.
//!
//! Invariant: fixed size; one short lock per finished request, never held across an await.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Requests kept: enough for a minute of percentiles at a few hundred requests per second.
pub const CAPACITY: usize = 8192;
/// Requests shown in the page's live feed.
pub const RECENT: usize = 25;
/// Fewer requests than this in a window give no error rate: one 404 after an idle minute is
/// not "100% errors".
pub const MIN_REQUESTS_FOR_RATE: u64 = 10;
/// Seconds of per-second request counts the page's chart starts with.
pub const HISTORY_SECS: usize = 120;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Unix ms when the request ended.
    pub at_ms: u64,
    pub request_id: String,
    pub endpoint: &'static str,
    pub deployment: Name,
    pub backend: Option<Name>,
    pub status: u16,
    pub error_type: &'static str,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Tenant name (stored keys only).
    pub tenant: Option<Name>,
}

/// A deployment, backend or tenant name, interned by the feed: an entry shares it, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Names kept interned at most (configured deployments, backends and tenants are far fewer);
/// past it a name is copied per entry.
const MAX_NAMES: usize = 4096;

#[derive(Debug)]
pub struct Feed {
    ring: Mutex<VecDeque<Entry>>,
    names: RwLock<HashSet<Arc<str>>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

/// p50/p95/p99 of a window, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Aggregates over the last `window`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub window_secs: u64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub errors: u64,
    /// `errors / requests`; `None` (JSON null) with fewer than [`MIN_REQUESTS_FOR_RATE`].
    pub error_rate: Option<f64>,
    pub latency_ms: Percentiles,
    pub ttft_ms: Percentiles,
    pub completion_tokens_per_sec: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Tenants by tokens (prompt + completion), most first, at most 10.
    pub top_tenants: Vec<(String, u64)>,
}

pub fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).saturating_sub(1).min(v.len() - 1)];
    Percentiles { p50: at(0.50), p95: at(0.95), p99: at(0.99) }
}

impl Feed {
    pub fn new() -> Self {
        Self { ring: Mutex::new(VecDeque::with_capacity(CAPACITY)), names: RwLock::default() }
    }

    /// `name`, shared with every entry that names it.
    pub fn intern(&self, name: &str) -> Name {
        if let Some(n) = self.names.read().ok().and_then(|set| set.get(name).cloned()) {
            return Name(n);
        }
        let n: Arc<str> = Arc::from(name);
        if let Ok(mut set) = self.names.write()
            && set.len() < MAX_NAMES
        {
            set.insert(Arc::clone(&n));
        }
        Name(n)
    }

    pub fn push(&self, e: Entry) {
        if let Ok(mut r) = self.ring.lock() {
            if r.len() == CAPACITY {
                r.pop_front();
            }
            r.push_back(e);
        }
    }

    /// The newest requests, newest first.
    pub fn recent(&self, n: usize) -> Vec<Entry> {
        self.ring.lock().map(|r| r.iter().rev().take(n).cloned().collect()).unwrap_or_default()
    }

    /// Requests that ended in each of the last [`HISTORY_SECS`] whole seconds before `now_ms`,
    /// oldest first: the chart's history, so a page opened late does not start empty.
    pub fn per_second(&self, now_ms: u64) -> Vec<u64> {
        let mut counts = vec![0u64; HISTORY_SECS];
        let Ok(r) = self.ring.lock() else { return counts };
        let end = now_ms / 1000;
        for e in r.iter().rev() {
            let ago = end.saturating_sub(e.at_ms / 1000) as usize;
            if ago >= HISTORY_SECS {
                break;
            }
            counts[HISTORY_SECS - 1 - ago] += 1;
        }
        counts
    }

    /// Aggregates over the requests that ended in the last `window` before `now_ms`.
    pub fn window(&self, window: Duration, now_ms: u64) -> Window {
        let Ok(r) = self.ring.lock() else { return Window::default() };
        let since = now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let inside: Vec<&Entry> = r.iter().rev().take_while(|e| e.at_ms >= since).collect();
        let secs = window.as_secs_f64().max(1.0);
        let errors = inside.iter().filter(|e| e.error_type != "none").count() as u64;
        let mut tenants: HashMap<&str, u64> = HashMap::new();
        for e in &inside {
            if let Some(t) = &e.tenant {
                *tenants.entry(t.as_str()).or_default() += u64::from(e.prompt_tokens) + u64::from(e.completion_tokens);
            }
        }
        let mut top: Vec<(String, u64)> = tenants.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        let completion: u64 = inside.iter().map(|e| u64::from(e.completion_tokens)).sum();
        let n = inside.len() as u64;
        Window {
            window_secs: window.as_secs(),
            requests: n,
            requests_per_sec: n as f64 / secs,
            errors,
            error_rate: (n >= MIN_REQUESTS_FOR_RATE).then(|| errors as f64 / n as f64),
            latency_ms: percentiles(inside.iter().map(|e| e.latency_ms).collect()),
            ttft_ms: percentiles(inside.iter().filter_map(|e| e.ttft_ms).collect()),
            completion_tokens_per_sec: completion as f64 / secs,
            prompt_tokens: inside.iter().map(|e| u64::from(e.prompt_tokens)).sum(),
            completion_tokens: completion,
            top_tenants: top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, latency_ms: f64, tenant: &str, error_type: &'static str) -> Entry {
        Entry {
            at_ms,
            request_id: "r".into(),
            endpoint: "chat",
            deployment: "m".into(),
            backend: Some("b".into()),
            status: 200,
            error_type,
            latency_ms,
            ttft_ms: Some(latency_ms / 2.0),
            prompt_tokens: 10,
            completion_tokens: 5,
            tenant: Some(tenant.into()),
        }
    }

    #[test]
    fn window_aggregates_only_recent_requests() {
        let f = Feed::new();
        f.push(entry(1_000, 999.0, "old", "none"));
        for i in 1..=100 {
            f.push(entry(100_000 + i, i as f64, if i % 4 == 0 { "a" } else { "b" }, if i <= 5 { "x" } else { "none" }));
        }
        let w = f.window(Duration::from_secs(10), 100_200);
        assert_eq!(w.requests, 100);
        assert_eq!(w.errors, 5);
        assert_eq!(w.latency_ms, Percentiles { p50: 50.0, p95: 95.0, p99: 99.0 });
        assert_eq!(w.completion_tokens, 500);
        assert_eq!(w.top_tenants, vec![("b".to_owned(), 75 * 15), ("a".to_owned(), 25 * 15)]);
        assert_eq!(f.recent(2).len(), 2);
        assert_eq!(f.recent(1)[0].at_ms, 100_100);
    }

    #[test]
    fn too_few_requests_give_no_error_rate() {
        let f = Feed::new();
        f.push(entry(100_000, 1.0, "t", "unknown_url"));
        let w = f.window(Duration::from_secs(60), 100_500);
        assert_eq!((w.requests, w.errors, w.error_rate), (1, 1, None));
        for i in 0..9 {
            f.push(entry(100_001 + i, 1.0, "t", "none"));
        }
        assert_eq!(f.window(Duration::from_secs(60), 100_500).error_rate, Some(0.1));
    }

    #[test]
    fn per_second_history_counts_each_second_oldest_first() {
        let f = Feed::new();
        f.push(entry(1_000, 1.0, "t", "none")); // older than the history
        f.push(entry(200_100, 1.0, "t", "none"));
        f.push(entry(200_900, 1.0, "t", "none"));
        f.push(entry(201_500, 1.0, "t", "none"));
        let h = f.per_second(201_700);
        assert_eq!(h.len(), HISTORY_SECS);
        assert_eq!((h[HISTORY_SECS - 1], h[HISTORY_SECS - 2]), (1, 2));
        assert_eq!(h.iter().sum::<u64>(), 3);
    }

    #[test]
    fn ring_is_bounded() {
        let f = Feed::new();
        for i in 0..(CAPACITY as u64 + 10) {
            f.push(entry(i, 1.0, "t", "none"));
        }
        assert_eq!(f.ring.lock().unwrap_or_else(|e| e.into_inner()).len(), CAPACITY);
    }
}
