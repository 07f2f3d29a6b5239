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
/// Polls re-read changes this far back from the newest one seen: for changes committed out of
/// their timestamps' order, and for clock skew between the replicas that *write* changes.
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

    /// Polls the store for key and tenant changes every `interval` until `stop`. The window is
    /// taken from the store's own timestamps (the newest change seen, less an overlap), never from
    /// this replica's clock, so a replica whose clock is skewed still sees every change; the first
    /// poll reads every key once.
    pub async fn poll(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut newest = i64::MIN;
        // Changes already acted on inside the overlap (id, updated_at): each invalidates once.
        let mut done: std::collections::HashSet<(String, i64)> = std::collections::HashSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.changes(newest.saturating_sub(POLL_OVERLAP_MS)).await {
                Ok((keys, tenants)) => {
                    newest = keys.iter().chain(&tenants).map(|(_, at)| *at).fold(newest, i64::max);
                    let mut fresh = |changes: Vec<(String, i64)>| -> Vec<String> {
                        changes.into_iter().filter(|c| done.insert(c.clone())).map(|(id, _)| id).collect()
                    };
                    let keys: Vec<KeyId> = fresh(keys).into_iter().map(KeyId::from).collect();
                    let tenants: Vec<TenantId> = fresh(tenants).into_iter().map(TenantId::from).collect();
                    done.retain(|(_, at)| *at >= newest.saturating_sub(POLL_OVERLAP_MS));
                    let dropped = self.invalidate(&keys, &tenants);
                    if dropped > 0 {
                        tracing::debug!(dropped, "key cache: entries invalidated by changes");
                    }
                }
                Err(e) => {
                    // Cached keys keep working; revocations do not propagate until the store is back.
                    self.poll_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "key cache: cannot poll the store for changes");
                }
            }
        }
    }

    /// The keys and tenants changed since `since_ms` (store time), each with its change's time.
    #[allow(clippy::type_complexity)]
    async fn changes(&self, since_ms: i64) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
        let keys = self.store.keys_changed_since(since_ms).await?;
        let tenants = self.store.tenants_changed_since(since_ms).await?;
        Ok((
            keys.into_iter().map(|k| (k.id.to_string(), k.updated_at_ms)).collect(),
            tenants.into_iter().map(|t| (t.id.to_string(), t.updated_at_ms)).collect(),
        ))
    }
}
