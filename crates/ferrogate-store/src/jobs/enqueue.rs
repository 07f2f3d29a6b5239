//! Enqueueing: one job or many in one transaction, deduplicated by `dedupe_key`.

use ferrogate_core::jobs::{JobId, JobState, NewJob};
use ferrogate_core::tenancy::StoreError;
use sqlx::{Any, Transaction};

use super::queue::SqlQueue;
use crate::error::db_err;
use crate::tenants::to_json;

impl SqlQueue {
    /// Stores `jobs` in one transaction; ids in input order.
    pub(crate) async fn insert_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, StoreError> {
        for job in &jobs {
            job.validate()?;
        }
        let now = self.now();
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            ids.push(insert_one(&mut tx, job, now).await?);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(ids)
    }
}

/// Inserts one job; on a dedupe-key conflict, the stored job's id.
async fn insert_one(tx: &mut Transaction<'static, Any>, job: NewJob, now: i64) -> Result<JobId, StoreError> {
    let id = JobId::generate();
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, state, tenant_id, key_id, batch_id, priority, attempts, max_attempts, payload, \
         cancel_requested, run_after_ms, dedupe_key, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, 0, $10, $11, $12, $12) ON CONFLICT DO NOTHING",
    )
    .bind(id.as_str())
    .bind(job.kind.as_str())
    .bind(JobState::Queued.as_str())
    .bind(job.tenant_id.as_ref().map(|t| t.as_str().to_owned()))
    .bind(job.key_id.as_ref().map(|k| k.as_str().to_owned()))
    .bind(job.batch_id.clone())
    .bind(i64::from(job.priority))
    .bind(i64::from(job.max_attempts))
    .bind(to_json(&job.payload)?)
    .bind(job.run_after_ms.unwrap_or(now))
    .bind(job.dedupe_key.clone())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    if inserted.rows_affected() == 1 {
        return Ok(id);
    }
    // Only the dedupe key can conflict (the id is fresh).
    let existing: Option<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
        .bind(job.dedupe_key.clone())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    existing.map(JobId::from).ok_or_else(|| StoreError::Conflict("job insert conflicted on its id".into()))
}
