//! Ending a run: complete with an answer, fail (retry with backoff, or dead), cancel.
//!
//! Invariant: every write is conditioned on `lease_token` and `state = 'running'`, so a worker
//! whose lease was taken over changes nothing.

use ferrogate_core::jobs::{AttemptOutcome, CancelOutcome, FailOutcome, JobFailure, JobId, JobState, Lease, Outcome};
use ferrogate_core::tenancy::StoreError;

use super::lease::finish_attempt;
use super::queue::{SqlQueue, parse};
use crate::error::db_err;
use crate::tenants::to_json;

/// Longest error message kept per attempt: runner errors may embed whole upstream bodies.
const MAX_ERROR_BYTES: usize = 4096;

/// `text` cut to [`MAX_ERROR_BYTES`] at a character boundary.
fn bounded(text: &str) -> &str {
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl SqlQueue {
    pub(crate) async fn finish(&self, lease: &Lease, outcome: Outcome) -> Result<bool, StoreError> {
        let (state, attempt, result) = match &outcome {
            Outcome::Succeeded(v) => (JobState::Succeeded, AttemptOutcome::Succeeded, Some(to_json(v)?)),
            Outcome::Failed(v) => (JobState::Failed, AttemptOutcome::Failed, Some(to_json(v)?)),
            Outcome::Cancelled => (JobState::Cancelled, AttemptOutcome::Cancelled, None),
        };
        let now = self.now();
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE jobs SET state = $3, result = $4, lease_token = NULL, lease_until_ms = NULL, \
             finished_at_ms = $5, updated_at_ms = $5 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(lease.job_id.as_str())
        .bind(&lease.token)
        .bind(state.as_str())
        .bind(result)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        finish_attempt(&mut tx, lease, now, attempt, None).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    pub(crate) async fn record_failure(&self, lease: &Lease, failure: JobFailure) -> Result<FailOutcome, StoreError> {
        let failure = JobFailure { error: bounded(&failure.error).to_owned(), ..failure };
        let now = self.now();
        let retry = failure.retryable && lease.attempt < lease.max_attempts;
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        // The kind's policy needs the kind: read under the same transaction's write.
        let kind: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET updated_at_ms = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running' RETURNING kind",
        )
        .bind(lease.job_id.as_str())
        .bind(&lease.token)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(kind) = kind else { return Ok(FailOutcome::LeaseLost) };
        let delay = self.retries.of(parse("job kind", &kind)?).delay(lease.attempt, self.jitter.unit());
        let run_after = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let state: String = sqlx::query_scalar(
            "UPDATE jobs SET state = CASE WHEN cancel_requested = 1 THEN 'cancelled' WHEN $3 = 1 THEN 'queued' \
             ELSE 'dead' END, run_after_ms = $4, last_error = $5, lease_token = NULL, lease_until_ms = NULL, \
             worker_id = NULL, finished_at_ms = CASE WHEN cancel_requested = 1 OR $3 = 0 THEN $6 ELSE NULL END, \
             updated_at_ms = $6 WHERE id = $1 AND lease_token = $2 RETURNING state",
        )
        .bind(lease.job_id.as_str())
        .bind(&lease.token)
        .bind(i64::from(retry))
        .bind(run_after)
        .bind(&failure.error)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let state: JobState = parse("job state", &state)?;
        let attempt = if state == JobState::Cancelled { AttemptOutcome::Cancelled } else { AttemptOutcome::Error };
        finish_attempt(&mut tx, lease, now, attempt, Some(&failure.error)).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(match state {
            JobState::Queued => FailOutcome::Retrying { run_after_ms: run_after },
            JobState::Cancelled => FailOutcome::Cancelled,
            _ => FailOutcome::Dead,
        })
    }

    pub(crate) async fn cancel_job(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        let now = self.now();
        let queued = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at_ms = $2, updated_at_ms = $2 \
             WHERE id = $1 AND state = 'queued'",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(&self.store.pool)
        .await
        .map_err(db_err)?;
        if queued.rows_affected() == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        let running =
            sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at_ms = $2 WHERE id = $1 AND state = 'running'")
                .bind(id.as_str())
                .bind(now)
                .execute(&self.store.pool)
                .await
                .map_err(db_err)?;
        if running.rows_affected() == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.store.pool)
            .await
            .map_err(db_err)?;
        match state {
            None => Ok(CancelOutcome::NotFound),
            Some(s) => Ok(CancelOutcome::AlreadyFinished(parse("job state", &s)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_ERROR_BYTES); // 2 bytes each
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.len() > MAX_ERROR_BYTES - 2);
    }
}
