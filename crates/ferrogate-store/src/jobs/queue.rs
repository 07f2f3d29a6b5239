//! [`SqlQueue`], the durable job queue over the [`Store`]'s pool, and reading its rows back.
//!
//! Invariant: every time the queue compares or writes comes from its [`Clock`], so tests move
//! time (lease expiry, backoff) instead of sleeping; replicas' clocks are assumed within a
//! fraction of the visibility timeout of each other.

use std::sync::Arc;

use ferrogate_core::jobs::{AttemptRecord, Jitter, JobId, JobRecord, RandomJitter, RetryPolicies};
use ferrogate_core::tenancy::time::{Clock, SystemClock};
use ferrogate_core::tenancy::{KeyId, StoreError, TenantId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::{DbKind, Store};

/// The durable job queue in SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct SqlQueue {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) jitter: Arc<dyn Jitter>,
    pub(crate) retries: Arc<RetryPolicies>,
}

impl std::fmt::Debug for SqlQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlQueue").field("db", &self.store.kind()).finish_non_exhaustive()
    }
}

impl Store {
    /// The job queue on this database: wall clock, random jitter, default retry policies.
    pub fn job_queue(&self) -> SqlQueue {
        SqlQueue {
            store: self.clone(),
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RandomJitter),
            retries: Arc::new(RetryPolicies::default()),
        }
    }
}

impl SqlQueue {
    /// Reads time from `clock` (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Draws backoff jitter from `jitter`.
    pub fn with_jitter(mut self, jitter: Arc<dyn Jitter>) -> Self {
        self.jitter = jitter;
        self
    }

    /// Retries each kind by `retries`.
    pub fn with_retries(mut self, retries: RetryPolicies) -> Self {
        self.retries = Arc::new(retries);
        self
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// ` FOR UPDATE SKIP LOCKED` on PostgreSQL (concurrent pickers pass each other's rows by);
    /// nothing on SQLite, whose single writer makes the picking statement atomic by itself.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.store.kind() {
            DbKind::Postgres => " FOR UPDATE SKIP LOCKED",
            DbKind::Sqlite => "",
        }
    }
}

/// The job columns [`job_from_row`] reads.
pub(crate) const JOB_COLS: &str = "id, kind, state, tenant_id, key_id, batch_id, priority, attempts, max_attempts, \
     payload, result, last_error, cancel_requested, run_after_ms, lease_token, lease_until_ms, dedupe_key, \
     created_at_ms, updated_at_ms, finished_at_ms";

/// `$start, $start+1, …` (`n` of them).
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn get_str(row: &AnyRow, name: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(name).map_err(|e| corrupt("job", e))
}

pub(crate) fn get_opt_str(row: &AnyRow, name: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(name).map_err(|e| corrupt("job", e))
}

pub(crate) fn get_i64(row: &AnyRow, name: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(name).map_err(|e| corrupt("job", e))
}

pub(crate) fn get_opt_i64(row: &AnyRow, name: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(name).map_err(|e| corrupt("job", e))
}

pub(crate) fn get_u32(row: &AnyRow, name: &str) -> Result<u32, StoreError> {
    u32::try_from(get_i64(row, name)?).map_err(|e| corrupt(name, e))
}

pub(crate) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

pub(crate) fn json(what: &str, s: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    Ok(JobRecord {
        id: JobId::from(get_str(row, "id")?),
        kind: parse("job kind", &get_str(row, "kind")?)?,
        state: parse("job state", &get_str(row, "state")?)?,
        tenant_id: get_opt_str(row, "tenant_id")?.map(TenantId::from),
        key_id: get_opt_str(row, "key_id")?.map(KeyId::from),
        batch_id: get_opt_str(row, "batch_id")?,
        priority: i32::try_from(get_i64(row, "priority")?).map_err(|e| corrupt("priority", e))?,
        attempts: get_u32(row, "attempts")?,
        max_attempts: get_u32(row, "max_attempts")?,
        payload: json("job payload", &get_str(row, "payload")?)?,
        result: get_opt_str(row, "result")?.map(|r| json("job result", &r)).transpose()?,
        last_error: get_opt_str(row, "last_error")?,
        cancel_requested: get_i64(row, "cancel_requested")? == 1,
        run_after_ms: get_i64(row, "run_after_ms")?,
        lease_until_ms: get_opt_i64(row, "lease_until_ms")?,
        dedupe_key: get_opt_str(row, "dedupe_key")?,
        created_at_ms: get_i64(row, "created_at_ms")?,
        updated_at_ms: get_i64(row, "updated_at_ms")?,
        finished_at_ms: get_opt_i64(row, "finished_at_ms")?,
    })
}

pub(crate) fn attempt_from_row(row: &AnyRow) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        attempt: get_u32(row, "attempt")?,
        worker_id: get_str(row, "worker_id")?,
        started_at_ms: get_i64(row, "started_at_ms")?,
        finished_at_ms: get_opt_i64(row, "finished_at_ms")?,
        outcome: parse("attempt outcome", &get_str(row, "outcome")?)?,
        error: get_opt_str(row, "error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_start() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }
}
