//! The store traits: one per concern (tenants, keys, usage), implemented by `ferrogate-store` for
//! SQLite and PostgreSQL and exercised by one behaviour suite against both.
//!
//! Invariants: object-safe (`Arc<dyn KeyStore>`); a store never sees or returns a key's plaintext
//! except the one [`NewKey`] that creation and rotation return; errors carry no SQL types.

use async_trait::async_trait;

use super::ids::{KeyId, TenantId};
use super::key::KeyDigest;
use super::model::{ApiKey, InvalidInput, KeyLookup, KeyUpdate, NewKey, NewKeySpec, NewTenant, Tenant, TenantUpdate};
use super::time;
use super::usage::{BudgetUsage, UsageQuery, UsageRecord, UsageRow, UsageSubject, UsageTotals};

/// The error source of a store's backend, boxed so core names no database crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The deadline of a store call on the request path (a key lookup on a cache miss, seeding a
/// budget from the ledger): a database that hangs — paused, partitioned — costs a request at most
/// this, then 503 `store_unavailable`, never a hang.
pub const REQUEST_PATH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// `call`, or [`StoreError::Unavailable`] once `deadline` has passed.
pub async fn within<T>(
    deadline: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Unavailable(Box::new(elapsed))),
    }
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The tenant or key does not exist.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// `"tenant"` or `"key"`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation contradicts stored state (a duplicate tenant name, deleting a tenant that
    /// still has active keys, rotating a revoked key).
    #[error("{0}")]
    Conflict(String),
    /// Refused before reaching the database.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The database could not be reached or did not answer in time; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The database answered with an error; retrying the same operation will likely fail again.
    #[error("store error: {0}")]
    Database(#[source] BoxError),
    /// A stored value could not be read back (hand-edited row, newer schema).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same operation may succeed later unchanged.
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::NotFound { .. }
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            | StoreError::Database(_)
            | StoreError::Corrupt(_) => false,
        }
    }
}

/// Tenants (teams).
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant; [`StoreError::Conflict`] if the name is taken.
    async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, StoreError>;
    /// The tenant, if it exists.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    /// The tenant with this name, if any.
    async fn get_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// All tenants, oldest first.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Changes name and/or limits; [`StoreError::Conflict`] if the new name is taken.
    async fn update_tenant(&self, id: &TenantId, update: TenantUpdate) -> Result<Tenant, StoreError>;
    /// Deletes a tenant. Refused with [`StoreError::Conflict`] while it has keys that are not
    /// revoked (deleting a team must not silently cut off working clients: revoke first); its
    /// revoked keys are deleted with it. Its usage rows stay: the ledger is history.
    async fn delete_tenant(&self, id: &TenantId) -> Result<(), StoreError>;
    /// Tenants changed (created or updated) at or after `since_ms`, for cache invalidation.
    async fn tenants_changed_since(&self, since_ms: i64) -> Result<Vec<Tenant>, StoreError>;
}

/// API keys. The auth path calls only [`KeyStore::lookup_key`] (on a cache miss) and
/// [`KeyStore::keys_changed_since`] (polled, to invalidate the cache).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a key for an existing tenant and returns its plaintext, once.
    async fn create_key(&self, spec: NewKeySpec) -> Result<NewKey, StoreError>;
    /// The key record, if it exists.
    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError>;
    /// All keys, or a tenant's keys, oldest first (revoked ones included).
    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError>;
    /// Changes name, scopes, limits or expiry.
    async fn update_key(&self, id: &KeyId, update: KeyUpdate) -> Result<ApiKey, StoreError>;
    /// Issues a new secret for the same record (same id, prefix, scopes and limits); the old
    /// secret stops matching at once, since its digest is replaced. Refused for a revoked key.
    async fn rotate_key(&self, id: &KeyId) -> Result<NewKey, StoreError>;
    /// Revokes a key for good. Idempotent: revoking again keeps the first revocation time.
    async fn revoke_key(&self, id: &KeyId) -> Result<ApiKey, StoreError>;
    /// The key with this digest and its tenant, whatever its status (check
    /// [`ApiKey::status`]); `None` if no key has this digest.
    async fn lookup_key(&self, digest: &KeyDigest) -> Result<Option<KeyLookup>, StoreError>;
    /// Keys changed (created, updated, rotated, revoked) at or after `since_ms`. Pollers should
    /// ask from their previous poll's start minus a margin for clock skew between instances.
    async fn keys_changed_since(&self, since_ms: i64) -> Result<Vec<ApiKey>, StoreError>;
}

/// The usage ledger.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Inserts rows in one transaction; rows whose `id` is already stored (or repeated earlier in
    /// `rows`) are skipped, so retrying a batch is harmless. Rows sharing a `request_id` are all
    /// written. Returns the rows inserted.
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<u64, StoreError>;
    /// A grouped report, groups in ascending byte order of their labels (chronological for
    /// hours and days).
    async fn query_usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
    /// Sums of a tenant's or key's rows created at or after `since_ms`.
    async fn usage_since(&self, subject: &UsageSubject, since_ms: i64) -> Result<UsageTotals, StoreError>;

    /// Usage in the UTC day and calendar month containing `now_ms`, for budget reporting.
    async fn budget_usage(&self, subject: &UsageSubject, now_ms: i64) -> Result<BudgetUsage, StoreError> {
        let day = self.usage_since(subject, time::day_start(now_ms)).await?;
        let month = self.usage_since(subject, time::month_start(now_ms)).await?;
        Ok(BudgetUsage { day, month })
    }
}

/// All three concerns in one object, for the server's state; upcasts to each trait.
pub trait TenancyStore: TenantStore + KeyStore + UsageStore {}

impl<T: TenantStore + KeyStore + UsageStore + ?Sized> TenancyStore for T {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A database that never answers costs the deadline, then `Unavailable` (→ 503).
    #[tokio::test(start_paused = true)]
    async fn a_hung_call_ends_at_its_deadline() {
        let start = tokio::time::Instant::now();
        let hung = within(REQUEST_PATH_DEADLINE, std::future::pending::<Result<(), StoreError>>()).await;
        assert!(matches!(hung, Err(StoreError::Unavailable(_))), "{hung:?}");
        assert_eq!(start.elapsed(), REQUEST_PATH_DEADLINE);
        let quick = within(Duration::from_secs(1), async { Ok::<_, StoreError>(7) }).await;
        assert_eq!(quick.ok(), Some(7));
    }
}
