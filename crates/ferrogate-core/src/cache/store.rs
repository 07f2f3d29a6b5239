//! The [`ResponseCache`] trait: get and put with a TTL. Implemented in process on moka
//! ([`MemoryCache`](super::memory::MemoryCache)) and on Redis by `ferrogate-store`, so replicas
//! share entries.

use std::time::Duration;

use async_trait::async_trait;

use super::entry::CachedCompletion;
use super::key::CacheKey;

/// A cache call failed. The edge treats it as a miss (and does not fill), logs and counts it:
/// a cache outage costs latency, never an answer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache could not be reached or did not answer in time.
    #[error("response cache unavailable: {0}")]
    Unavailable(String),
    /// A stored entry could not be read back (another version's format).
    #[error("response cache entry unreadable: {0}")]
    Corrupt(String),
}

/// Cached answers by [`CacheKey`].
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The entry, if present and not expired.
    async fn get(&self, key: &CacheKey) -> Result<Option<CachedCompletion>, CacheError>;
    /// Stores `entry` for `ttl` (replacing any entry under the key).
    async fn put(&self, key: &CacheKey, entry: &CachedCompletion, ttl: Duration) -> Result<(), CacheError>;
}
