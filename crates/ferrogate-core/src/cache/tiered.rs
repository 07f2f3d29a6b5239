//! Two caches in a row: a near one (in process) in front of a far one (Redis, shared by the
//! replicas). A hit near costs no network; a far hit fills the near cache; a put goes to both.
//!
//! Staleness bound: an entry copied near from far lives there for at most `near_ttl`, so it can
//! outlive its far expiry by that much (the far TTL is not read back). Keep `near_ttl` short.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::entry::CachedCompletion;
use super::key::CacheKey;
use super::store::{CacheError, ResponseCache};

/// A near cache in front of a far one.
#[derive(Clone)]
pub struct TieredCache {
    near: Arc<dyn ResponseCache>,
    far: Arc<dyn ResponseCache>,
    near_ttl: Duration,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache").field("near_ttl", &self.near_ttl).finish_non_exhaustive()
    }
}

impl TieredCache {
    /// `near_ttl` bounds how long a near copy lives (see the module's staleness bound).
    pub fn new(near: Arc<dyn ResponseCache>, far: Arc<dyn ResponseCache>, near_ttl: Duration) -> Self {
        Self { near, far, near_ttl }
    }
}

#[async_trait]
impl ResponseCache for TieredCache {
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError> {
        if let Ok(Some(hit)) = self.near.get(key).await {
            return Ok(Some(hit));
        }
        let found = self.far.get(key).await?;
        if let Some(entry) = &found {
            // A near failure only costs the next lookup a far round trip.
            let _ = self.near.put(key, entry, self.near_ttl).await;
        }
        Ok(found)
    }

    async fn put(&self, key: &CacheKey, entry: &CachedCompletion, ttl: Duration) -> Result<(), CacheError> {
        let _ = self.near.put(key, entry, ttl.min(self.near_ttl)).await;
        self.far.put(key, entry, ttl).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ferrogate_protocol::openai::{ChatCompletionRequest, ChatMessage, FinishReason, Role, Usage};

    use super::*;
    use crate::cache::key::cache_key;
    use crate::cache::memory::MemoryCache;
    use crate::tenancy::time::ManualClock;

    fn key(text: &str) -> CacheKey {
        let req = ChatCompletionRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new(Role::User, text)],
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
            usage: Usage::new(1, 1, None),
        }
    }

    /// Two replicas: their own near caches, one shared far cache.
    #[tokio::test]
    async fn a_far_hit_fills_the_near_cache_of_another_replica() {
        let clock = Arc::new(ManualClock::new(0));
        let far: Arc<dyn ResponseCache> = Arc::new(MemoryCache::new(1 << 20, clock.clone()));
        let near_a = Arc::new(MemoryCache::new(1 << 20, clock.clone()));
        let near_b = Arc::new(MemoryCache::new(1 << 20, clock.clone()));
        let a = TieredCache::new(near_a.clone(), far.clone(), Duration::from_secs(5));
        let b = TieredCache::new(near_b.clone(), far.clone(), Duration::from_secs(5));
        a.put(&key("q"), &entry("answer"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(near_b.get(&key("q")).await.unwrap(), None);
        assert_eq!(b.get(&key("q")).await.unwrap(), Some(entry("answer")), "from the far cache");
        assert_eq!(near_b.get(&key("q")).await.unwrap(), Some(entry("answer")), "now near too");
        // The near copy lives near_ttl at most; the far entry still answers after it.
        clock.advance(6_000);
        assert_eq!(near_b.get(&key("q")).await.unwrap(), None);
        assert_eq!(b.get(&key("q")).await.unwrap(), Some(entry("answer")));
        assert_eq!(b.get(&key("other")).await.unwrap(), None);
    }
}
