//! Leasing: picking runnable jobs atomically, taking over expired leases, heartbeats, releases.
//!
//! The pick is one `UPDATE … WHERE id IN (SELECT … ORDER BY priority, run_after_ms LIMIT n)
//! RETURNING …`: on PostgreSQL the inner select locks `FOR UPDATE SKIP LOCKED`, so concurrent
//! pickers pass each other's rows by instead of waiting or double-taking; on SQLite the statement
//! holds the single write lock from its start, which makes it atomic by itself.

use ferrogate_core::jobs::{AttemptOutcome, JobState, Lease, LeaseRequest, LeaseStatus, LeasedJob};
use ferrogate_core::tenancy::StoreError;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::queue::{JOB_COLS, SqlQueue, get_i64, job_from_row, placeholders};
use crate::error::db_err;

/// Most jobs reaped (expired with no attempts left) per lease call.
const REAP_BATCH: i64 = 100;

/// Why a run whose lease ran out ended, in its attempt record.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped heartbeating";

impl SqlQueue {
    pub(crate) async fn pick(&self, req: &LeaseRequest) -> Result<Vec<LeasedJob>, StoreError> {
        if req.max_jobs == 0 || req.kinds.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.reap_expired(now).await?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let vis = i64::try_from(req.visibility_timeout.as_millis()).unwrap_or(i64::MAX);
        let until = now.saturating_add(vis);
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $2, lease_until_ms = $3, \
             worker_id = $4, updated_at_ms = $1 WHERE id IN (SELECT id FROM jobs WHERE kind IN ({kinds}) AND \
             ((state = 'queued' AND run_after_ms <= $1) OR (state = 'running' AND lease_until_ms < $1 AND \
             attempts < max_attempts AND cancel_requested = 0)) ORDER BY priority, run_after_ms, id LIMIT $5{lock}) \
             RETURNING {JOB_COLS}",
            kinds = placeholders(6, req.kinds.len()),
            lock = self.skip_locked(),
        );
        let mut query =
            sqlx::query(&sql).bind(now).bind(&token).bind(until).bind(&req.worker_id).bind(i64::from(req.max_jobs));
        for kind in &req.kinds {
            query = query.bind(kind.as_str());
        }
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let rows = query.fetch_all(&mut *tx).await.map_err(db_err)?;
        let mut jobs = rows.iter().map(|r| leased_from_row(r, &token)).collect::<Result<Vec<_>, _>>()?;
        record_starts(&mut tx, &jobs, &req.worker_id, now).await?;
        tx.commit().await.map_err(db_err)?;
        jobs.sort_by(|a, b| (a.priority, a.created_at_ms, a.id()).cmp(&(b.priority, b.created_at_ms, b.id())));
        Ok(jobs)
    }

    /// Ends jobs whose lease ran out with no attempts left (→ dead) or with a cancel asked for
    /// (→ cancelled). A cheap read first: most calls find nothing and take no write lock.
    async fn reap_expired(&self, now: i64) -> Result<(), StoreError> {
        let cond = "state = 'running' AND lease_until_ms < $1 AND (attempts >= max_attempts OR cancel_requested = 1)";
        let any: Option<String> = sqlx::query_scalar(&format!("SELECT id FROM jobs WHERE {cond} LIMIT 1"))
            .bind(now)
            .fetch_optional(&self.store.pool)
            .await
            .map_err(db_err)?;
        if any.is_none() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'dead' END, \
             last_error = CASE WHEN cancel_requested = 1 THEN last_error ELSE $2 END, lease_token = NULL, \
             lease_until_ms = NULL, finished_at_ms = $1, updated_at_ms = $1 \
             WHERE id IN (SELECT id FROM jobs WHERE {cond} LIMIT $3{lock}) RETURNING id",
            lock = self.skip_locked()
        );
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(now)
            .bind(LEASE_EXPIRED)
            .bind(REAP_BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        close_open_attempts(&mut tx, &ids, now).await?;
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn extend(&self, lease: &Lease, extend: std::time::Duration) -> Result<LeaseStatus, StoreError> {
        let now = self.now();
        let until = now.saturating_add(i64::try_from(extend.as_millis()).unwrap_or(i64::MAX));
        let flag: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_until_ms = $3, updated_at_ms = $4 WHERE id = $1 AND lease_token = $2 \
             AND state = 'running' RETURNING cancel_requested",
        )
        .bind(lease.job_id.as_str())
        .bind(&lease.token)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.store.pool)
        .await
        .map_err(db_err)?;
        Ok(match flag {
            None => LeaseStatus::Lost,
            Some(1) => LeaseStatus::CancelRequested,
            Some(_) => LeaseStatus::Held,
        })
    }

    /// Back to queued (cancelled if a cancel was asked for), the attempt uncounted.
    pub(crate) async fn hand_back(&self, lease: &Lease) -> Result<bool, StoreError> {
        let now = self.now();
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, \
             attempts = attempts - 1, lease_token = NULL, lease_until_ms = NULL, worker_id = NULL, \
             run_after_ms = $3, finished_at_ms = CASE WHEN cancel_requested = 1 THEN $3 ELSE NULL END, \
             updated_at_ms = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.job_id.as_str())
        .bind(&lease.token)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        finish_attempt(&mut tx, lease, now, AttemptOutcome::Released, None).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
}

fn leased_from_row(row: &AnyRow, token: &str) -> Result<LeasedJob, StoreError> {
    let job = job_from_row(row)?;
    debug_assert_eq!(job.state, JobState::Running);
    let lease_until_ms = get_i64(row, "lease_until_ms")?;
    Ok(LeasedJob {
        lease: Lease { job_id: job.id, token: token.to_owned(), attempt: job.attempts, max_attempts: job.max_attempts },
        kind: job.kind,
        payload: job.payload,
        tenant_id: job.tenant_id,
        key_id: job.key_id,
        batch_id: job.batch_id,
        priority: job.priority,
        created_at_ms: job.created_at_ms,
        lease_until_ms,
    })
}

/// Closes the attempts left open by expired leases of the just-leased jobs, then opens theirs.
async fn record_starts(
    tx: &mut Transaction<'static, Any>,
    jobs: &[LeasedJob],
    worker: &str,
    now: i64,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    // Only a job run before can have an attempt left open (by a lease that expired).
    let rerun: Vec<String> = jobs.iter().filter(|j| j.lease.attempt > 1).map(|j| j.id().as_str().to_owned()).collect();
    close_open_attempts(tx, &rerun, now).await?;
    // $1 worker, $2 now, then (id, job_id, attempt, lease_token) per job.
    let rows: Vec<String> = (0..jobs.len())
        .map(|i| {
            let p = 3 + i * 4;
            format!("(${p}, ${}, ${}, ${}, $1, 'running', $2)", p + 1, p + 2, p + 3)
        })
        .collect();
    let sql = format!(
        "INSERT INTO job_attempts (id, job_id, attempt, lease_token, worker_id, outcome, started_at_ms) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(worker).bind(now);
    for job in jobs {
        query = query
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(job.id().as_str())
            .bind(i64::from(job.lease.attempt))
            .bind(&job.lease.token);
    }
    query.execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

/// Marks the open attempts of `ids` as lost to an expired lease.
async fn close_open_attempts(tx: &mut Transaction<'static, Any>, ids: &[String], now: i64) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE job_attempts SET finished_at_ms = $1, outcome = 'lease_expired', error = $2 \
         WHERE finished_at_ms IS NULL AND job_id IN ({})",
        placeholders(3, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(now).bind(LEASE_EXPIRED);
    for id in ids {
        query = query.bind(id.as_str());
    }
    query.execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

/// Closes the attempt of `lease`.
pub(crate) async fn finish_attempt(
    tx: &mut Transaction<'static, Any>,
    lease: &Lease,
    now: i64,
    outcome: AttemptOutcome,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE job_attempts SET finished_at_ms = $3, outcome = $4, error = $5 \
         WHERE job_id = $1 AND lease_token = $2 AND finished_at_ms IS NULL",
    )
    .bind(lease.job_id.as_str())
    .bind(&lease.token)
    .bind(now)
    .bind(outcome.as_str())
    .bind(error.map(str::to_owned))
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
