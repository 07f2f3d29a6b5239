//! The response cache in Redis: core's [`ResponseCache`] shared by every gateway replica.
//!
//! One string key per entry, `<prefix><64 hex digits of the cache key>`, written with
//! `SET … EX <ttl seconds>` (Redis expires it; a TTL under a second is rounded up to one), the
//! value the entry's compact JSON. Every call is bounded by `timeout`; the connection is lazy and
//! reconnects by itself, so a Redis outage makes calls fail fast (the edge counts them as misses)
//! and recovers when Redis is back. Redis's own `maxmemory` policy bounds its size.

use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::cache::{CacheError, CacheKey, CachedCompletion, ResponseCache};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How to reach Redis for the cache.
#[derive(Debug, Clone)]
pub struct RedisCacheOptions {
    /// Prepended to every key (fleets sharing one Redis, tests running side by side).
    pub key_prefix: String,
    /// Bound of one call (connect, send, answer).
    pub timeout: Duration,
}

impl Default for RedisCacheOptions {
    fn default() -> Self {
        Self { key_prefix: "fg:cache:".into(), timeout: Duration::from_millis(100) }
    }
}

/// The Redis [`ResponseCache`].
#[derive(Clone)]
pub struct RedisResponseCache {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisResponseCache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// A Redis error's category, never its text (which may repeat the URL).
fn unavailable(e: &redis::RedisError) -> CacheError {
    CacheError::Unavailable(format!("redis: {}", e.category()))
}

impl RedisResponseCache {
    /// A cache on `url`; connects lazily (on the current tokio runtime).
    pub fn open(url: &str, opts: RedisCacheOptions) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a valid Redis URL ({})", e.category()))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(None)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| format!("cannot set up the Redis connection ({})", e.category()))?;
        Ok(Self { conn, prefix: opts.key_prefix, timeout: opts.timeout })
    }

    fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.to_hex())
    }

    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(CacheError::Unavailable(format!("redis: no answer within {} ms", self.timeout.as_millis()))),
        }
    }
}

/// Whole seconds for `EX`, at least one.
fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0)).max(1)
}

#[async_trait]
impl ResponseCache for RedisResponseCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        let mut conn = self.conn.clone();
        let k = self.redis_key(key);
        let raw: Option<Vec<u8>> = self.bounded(conn.get(&k)).await?;
        raw.map(|bytes| serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt(e.to_string()))).transpose()
    }

    async fn put(&self, key: &CacheKey, entry: &CachedCompletion, ttl: Duration) -> Result<(), CacheError> {
        let value = serde_json::to_vec(entry).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        let mut conn = self.conn.clone();
        let k = self.redis_key(key);
        self.bounded(conn.set_ex::<_, _, ()>(&k, value, ttl_secs(ttl))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(60)), 60);
    }
}
