//! Stored keys on the auth path: a presented key's digest → its record and tenant, cached in
//! memory so a steady stream of requests costs no database round trip; unknown digests are
//! cached too (bounded), and concurrent database lookups are capped, so random keys cannot turn
//! into a database flood. A poller invalidates entries whose key or tenant changed on any
//! instance (revocation, rotation, new limits).
//!
//! Invariants: an entry is the store's answer at some moment since the last poll that covered
//! it; a cached record is re-checked for revocation and expiry on every use; the plaintext key
//! is never held (the map is keyed by digest).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrogate_core::tenancy::store::{REQUEST_PATH_DEADLINE, within};
use ferrogate_core::tenancy::{KeyDigest, KeyId, KeyLookup, KeyStatus, StoreError, TenancyStore, TenantId, parse_key};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::sharded::Sharded;

/// Unknown digests remembered (an attacker's random keys evict each other, not real keys).
const UNKNOWN_CAP: usize = 16_384;
/// Database lookups for keys not in the cache, at once.
const CONCURRENT_LOOKUPS: usize = 4;
/// Polls re-read changes this far back, for clock skew between instances and for lookups that
/// raced with a change.
const POLL_OVERLAP_MS: i64 = 5_000;

/// Why a presented key was not accepted.
#[derive(Debug)]
pub enum Rejected {
    /// Not shaped like a ferrogate key (no lookup was made).
    Malformed,
    /// Well-formed, but no key has this digest.
    Unknown,
    Revoked,
    Expired,
    /// The store could not be asked.
    Unavailable(StoreError),
}

pub struct KeyCache {
    store: Arc<dyn TenancyStore>,
    known: Sharded<KeyDigest, Arc<KeyLookup>>,
    unknown: Sharded<KeyDigest, ()>,
    lookups: Semaphore,
    /// Database lookups made (tests and metrics: steady state makes none).
    pub misses: AtomicU64,
    /// Failed polls since start.
    pub poll_failures: AtomicU64,
}

impl KeyCache {
    pub fn new(store: Arc<dyn TenancyStore>) -> Self {
        Self {
            store,
            known: Sharded::new(),
            unknown: Sharded::new(),
            lookups: Semaphore::new(CONCURRENT_LOOKUPS),
            misses: AtomicU64::new(0),
            poll_failures: AtomicU64::new(0),
        }
    }

    /// The record and tenant of an active key, from the cache when possible.
    pub async fn authenticate(&self, presented: &str, now_ms: i64) -> Result<Arc<KeyLookup>, Rejected> {
        let digest = parse_key(presented).map_err(|_| Rejected::Malformed)?.digest();
        let found = match self.cached(&digest)? {
            Some(hit) => hit,
            None => self.fetch(digest).await?,
        };
        match found.key.status(now_ms) {
            KeyStatus::Active => Ok(found),
            KeyStatus::Revoked => Err(Rejected::Revoked),
            KeyStatus::Expired => Err(Rejected::Expired),
        }
    }

    /// Only the cache: `Ok(None)` on a miss, without touching the store.
    pub fn cached(&self, digest: &KeyDigest) -> Result<Option<Arc<KeyLookup>>, Rejected> {
        if let Some(hit) = self.known.get(digest) {
            return Ok(Some(hit));
        }
        if self.unknown.get(digest).is_some() {
            return Err(Rejected::Unknown);
        }
        Ok(None)
    }

    async fn fetch(&self, digest: KeyDigest) -> Result<Arc<KeyLookup>, Rejected> {
        let _permit = self.lookups.acquire().await.map_err(|_| Rejected::Unknown)?;
        // Someone may have fetched it while this request waited for a permit.
        if let Some(hit) = self.cached(&digest)? {
            return Ok(hit);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        match within(REQUEST_PATH_DEADLINE, self.store.lookup_key(&digest)).await {
            Ok(Some(found)) => {
                let found = Arc::new(found);
                self.known.insert(digest, Arc::clone(&found));
                Ok(found)
            }
            Ok(None) => {
                self.unknown.insert_bounded(digest, (), UNKNOWN_CAP);
                Err(Rejected::Unknown)
            }
            Err(e) => Err(Rejected::Unavailable(e)),
        }
    }

    /// Drops the entries of these keys (by id: a rotation changed the digest) and tenants.
    pub fn invalidate(&self, keys: &[KeyId], tenants: &[TenantId]) -> usize {
        if keys.is_empty() && tenants.is_empty() {
            return 0;
        }
        self.unknown.clear();
        self.known.remove_where(|_, l| keys.contains(&l.key.id) || tenants.contains(&l.tenant.id))
    }

    /// Polls the store for key and tenant changes every `interval` until `stop`; wall-clock time,
    /// since it is compared with the store's own timestamps.
    pub async fn poll(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut since = ferrogate_core::tenancy::time::now_ms();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let started = ferrogate_core::tenancy::time::now_ms();
            match self.changes(since - POLL_OVERLAP_MS).await {
                Ok((keys, tenants)) => {
                    let dropped = self.invalidate(&keys, &tenants);
                    if dropped > 0 {
                        tracing::debug!(dropped, "key cache: entries invalidated by changes");
                    }
                    since = started;
                }
                Err(e) => {
                    // Cached keys keep working; revocations do not propagate until the store is back.
                    self.poll_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "key cache: cannot poll the store for changes");
                }
            }
        }
    }

    async fn changes(&self, since_ms: i64) -> Result<(Vec<KeyId>, Vec<TenantId>), StoreError> {
        let keys = self.store.keys_changed_since(since_ms).await?;
        let tenants = self.store.tenants_changed_since(since_ms).await?;
        Ok((keys.into_iter().map(|k| k.id).collect(), tenants.into_iter().map(|t| t.id).collect()))
    }
}
