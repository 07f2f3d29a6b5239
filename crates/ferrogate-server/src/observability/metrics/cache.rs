//! The response-cache concern: one [`CacheEvent`] per lookup of a cacheable request.

use super::*;

/// What the cache step of the pipeline reports.
#[derive(Debug, Clone, Copy)]
pub enum CacheEvent<'a> {
    /// Answered from the cache; `tokens` (prompt + completion) were not computed again.
    Hit { deployment: &'a str, tokens: u64 },
    /// Not in the cache (or `Cache-Control: no-cache`): the backend answers, the cache is filled.
    Miss { deployment: &'a str },
    /// The cache failed (Redis down, unreadable entry): treated as a miss.
    Error { deployment: &'a str },
}

impl Metrics {
    /// Records one cache lookup.
    pub fn cache(&self, e: CacheEvent<'_>) {
        let (deployment, result) = match e {
            CacheEvent::Hit { deployment, tokens } => {
                self.counter(CACHE_SAVED_TOKENS, vec![label("deployment", deployment)]).increment(tokens);
                (deployment, "hit")
            }
            CacheEvent::Miss { deployment } => (deployment, "miss"),
            CacheEvent::Error { deployment } => (deployment, "error"),
        };
        self.counter(CACHE_LOOKUPS, vec![label("deployment", deployment), slabel("result", result)]).increment(1);
    }
}
