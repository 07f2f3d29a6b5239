//! The in-process [`ResponseCache`] on moka: bounded by the bytes its entries hold (a weigher),
//! each entry expiring after its own TTL.
//!
//! Expiry is checked twice: moka evicts an entry once its TTL passed on moka's own clock (that
//! frees the memory), and `get` refuses an entry whose deadline on the injected [`Clock`] passed
//! (that makes the TTL exact and testable without sleeping).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;

use super::entry::CachedCompletion;
use super::key::CacheKey;
use super::store::{CacheError, ResponseCache};
use crate::tenancy::time::Clock;

/// A stored entry and its deadline.
struct Slot {
    entry: CachedCompletion,
    ttl: Duration,
    /// Unix ms on the cache's clock after which the entry is not served.
    expires_at_ms: i64,
}

/// Each entry lives for the TTL it was put with.
struct PerEntryTtl;

impl Expiry<CacheKey, Arc<Slot>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &CacheKey, slot: &Arc<Slot>, _at: Instant) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        slot: &Arc<Slot>,
        _at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// The in-process cache.
#[derive(Clone)]
pub struct MemoryCache {
    cache: Cache<CacheKey, Arc<Slot>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache").field("entries", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl MemoryCache {
    /// A cache holding at most about `max_bytes` of entries (least recently used ones go first).
    pub fn new(max_bytes: u64, clock: Arc<dyn Clock>) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, slot: &Arc<Slot>| slot.entry.weight().saturating_add(32))
            .expire_after(PerEntryTtl)
            .build();
        Self { cache, clock }
    }

    /// The bytes held, as weighed (after pending evictions are applied).
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// How many entries are held (after pending evictions are applied).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        let Some(slot) = self.cache.get(key) else { return Ok(None) };
        if self.clock.now_ms() >= slot.expires_at_ms {
            self.cache.invalidate(key);
            return Ok(None);
        }
        Ok(Some(slot.entry.clone()))
    }

    async fn put(&self, key: &CacheKey, entry: &CachedCompletion, ttl: Duration) -> Result<(), CacheError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let expires_at_ms = self.clock.now_ms().saturating_add(ttl_ms);
        self.cache.insert(*key, Arc::new(Slot { entry: entry.clone(), ttl, expires_at_ms }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ferrogate_protocol::openai::{ChatCompletionRequest, ChatMessage, FinishReason, Role, Usage};

    use super::*;
    use crate::cache::key::cache_key;
    use crate::tenancy::time::ManualClock;

    fn key(i: usize) -> CacheKey {
        let req = ChatCompletionRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new(Role::User, i.to_string())],
            ..ChatCompletionRequest::default()
        };
        cache_key("t", "d", &req)
    }

    fn entry(text: &str) -> CachedCompletion {
        CachedCompletion {
            model: "m".into(),
            text: text.into(),
            tool_calls: None,
            finish_reason: FinishReason::Stop,
            usage: Usage::new(3, 1, None),
        }
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cache = MemoryCache::new(1 << 20, clock.clone());
        cache.put(&key(1), &entry("short"), Duration::from_secs(10)).await.unwrap();
        cache.put(&key(2), &entry("long"), Duration::from_secs(100)).await.unwrap();
        assert_eq!(cache.get(&key(1)).await.unwrap(), Some(entry("short")));
        clock.advance(9_999);
        assert!(cache.get(&key(1)).await.unwrap().is_some(), "still inside its TTL");
        clock.advance(1);
        assert_eq!(cache.get(&key(1)).await.unwrap(), None, "expired at its TTL");
        assert_eq!(cache.get(&key(2)).await.unwrap(), Some(entry("long")), "each entry has its own TTL");
        assert_eq!(cache.get(&key(3)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_byte_bound() {
        let clock = Arc::new(ManualClock::new(0));
        let bound = 64 * 1024;
        let cache = MemoryCache::new(bound, clock);
        let big = "x".repeat(1000);
        for i in 0..500 {
            cache.put(&key(i), &entry(&big), Duration::from_secs(60)).await.unwrap();
        }
        let held = cache.weighted_size();
        assert!(held <= bound, "{held} > {bound}");
        let count = cache.entry_count();
        assert!(count > 0 && count < 500, "{count} entries held");
    }

    #[tokio::test]
    async fn a_put_replaces_the_entry_and_its_ttl() {
        let clock = Arc::new(ManualClock::new(0));
        let cache = MemoryCache::new(1 << 20, clock.clone());
        cache.put(&key(1), &entry("a"), Duration::from_secs(1)).await.unwrap();
        cache.put(&key(1), &entry("b"), Duration::from_secs(10)).await.unwrap();
        clock.advance(5_000);
        assert_eq!(cache.get(&key(1)).await.unwrap(), Some(entry("b")));
    }
}
