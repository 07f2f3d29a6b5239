//! Reading the queue back and the dead-letter queue's operations: get, history, stats, batch
//! counts, list / replay / delete / purge dead jobs, pruning finished ones.

use std::collections::BTreeMap;

use ferrogate_core::jobs::{
    AttemptRecord, DeadFilter, JobId, JobKind, JobRecord, JobState, KindStats, Page, QueueStats,
};
use ferrogate_core::tenancy::StoreError;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::queue::{JOB_COLS, SqlQueue, attempt_from_row, get_i64, get_opt_i64, get_str, job_from_row, parse};
use crate::error::db_err;

/// `state = 'dead'` and the filter's conditions, its parameters numbered from `first`; with
/// the values to bind, in order.
fn dead_where(filter: &DeadFilter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::from("state = 'dead'");
    let mut binds = Vec::new();
    let mut add = |column: &str, value: Option<String>| {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ${}", first + binds.len()));
            binds.push(v);
        }
    };
    add("kind", filter.kind.map(|k| k.as_str().to_owned()));
    add("batch_id", filter.batch_id.clone());
    add("tenant_id", filter.tenant_id.as_ref().map(|t| t.as_str().to_owned()));
    (sql, binds)
}

fn bind_all<'q>(mut query: Query<'q, Any, AnyArguments<'q>>, binds: &'q [String]) -> Query<'q, Any, AnyArguments<'q>> {
    for b in binds {
        query = query.bind(b.as_str());
    }
    query
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl SqlQueue {
    pub(crate) async fn get_job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.store.pool).await.map_err(db_err)?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    pub(crate) async fn attempts_of(&self, id: &JobId) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, worker_id, started_at_ms, finished_at_ms, outcome, error FROM job_attempts \
             WHERE job_id = $1 ORDER BY started_at_ms, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.store.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(attempt_from_row).collect()
    }

    pub(crate) async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT kind, state, CAST(CASE WHEN state = 'queued' AND run_after_ms > $1 THEN 1 ELSE 0 END AS BIGINT) \
             AS delayed, COUNT(*) AS n, MIN(run_after_ms) AS oldest FROM jobs \
             WHERE state IN ('queued', 'running', 'dead') \
             GROUP BY kind, state, CAST(CASE WHEN state = 'queued' AND run_after_ms > $1 THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(now)
        .fetch_all(&self.store.pool)
        .await
        .map_err(db_err)?;
        let mut stats: BTreeMap<JobKind, KindStats> = JobKind::ALL.iter().map(|k| (*k, KindStats::default())).collect();
        for row in &rows {
            let kind: JobKind = parse("job kind", &get_str(row, "kind")?)?;
            let n = to_u64(get_i64(row, "n")?);
            let s = stats.entry(kind).or_default();
            match (parse::<JobState>("job state", &get_str(row, "state")?)?, get_i64(row, "delayed")? == 1) {
                (JobState::Queued, true) => s.delayed += n,
                (JobState::Queued, false) => {
                    s.ready += n;
                    let oldest = get_opt_i64(row, "oldest")?.unwrap_or(now);
                    s.oldest_ready_age_ms = to_u64(now - oldest);
                }
                (JobState::Running, _) => s.running += n,
                (JobState::Dead, _) => s.dead += n,
                _ => {}
            }
        }
        Ok(QueueStats { kinds: JobKind::ALL.iter().map(|k| (*k, stats.remove(k).unwrap_or_default())).collect() })
    }

    pub(crate) async fn counts_of_batch(&self, batch_id: &str) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs WHERE batch_id = $1 GROUP BY state")
            .bind(batch_id)
            .fetch_all(&self.store.pool)
            .await
            .map_err(db_err)?;
        let mut counts = BTreeMap::new();
        for row in &rows {
            let state: JobState = parse("job state", &get_str(row, "state")?)?;
            counts.insert(state, to_u64(get_i64(row, "n")?));
        }
        Ok(counts)
    }

    pub(crate) async fn jobs_of_batch(&self, batch_id: &str, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE batch_id = $1 AND id > $2 ORDER BY id LIMIT $3");
        let rows = sqlx::query(&sql)
            .bind(batch_id)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(i64::from(page.capped_limit()))
            .fetch_all(&self.store.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    pub(crate) async fn cancel_jobs_of_batch(&self, batch_id: &str) -> Result<u64, StoreError> {
        let now = self.now();
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        let queued = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at_ms = $2, updated_at_ms = $2 \
             WHERE batch_id = $1 AND state = 'queued'",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at_ms = $2 \
             WHERE batch_id = $1 AND state = 'running' AND cancel_requested = 0",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(queued.rows_affected())
    }

    pub(crate) async fn dead_page(&self, filter: &DeadFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        let (cond, binds) = dead_where(filter, 3);
        let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE {cond} AND id > $1 ORDER BY id LIMIT $2");
        let after = page.after.as_deref().unwrap_or("");
        let query = sqlx::query(&sql).bind(after).bind(i64::from(page.capped_limit()));
        let rows = bind_all(query, &binds).fetch_all(&self.store.pool).await.map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    /// Dead → queued, attempts reset, for one id (`Some`) or a filter.
    pub(crate) async fn requeue_dead(&self, id: Option<&JobId>, filter: &DeadFilter) -> Result<u64, StoreError> {
        let (cond, mut binds) = dead_where(filter, 2);
        let mut cond = cond;
        if let Some(id) = id {
            cond.push_str(&format!(" AND id = ${}", 2 + binds.len()));
            binds.push(id.as_str().to_owned());
        }
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_after_ms = $1, cancel_requested = 0, \
             finished_at_ms = NULL, updated_at_ms = $1 WHERE {cond}"
        );
        let query = sqlx::query(&sql).bind(self.now());
        let done = bind_all(query, &binds).execute(&self.store.pool).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    /// Deletes dead jobs (one id or a filter) and, by cascade, their history.
    pub(crate) async fn delete_dead_jobs(&self, id: Option<&JobId>, filter: &DeadFilter) -> Result<u64, StoreError> {
        let (mut cond, mut binds) = dead_where(filter, 1);
        if let Some(id) = id {
            cond.push_str(&format!(" AND id = ${}", 1 + binds.len()));
            binds.push(id.as_str().to_owned());
        }
        let sql = format!("DELETE FROM jobs WHERE {cond}");
        let done = bind_all(sqlx::query(&sql), &binds).execute(&self.store.pool).await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at_ms < $1")
                .bind(before_ms)
                .execute(&self.store.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_filters_number_their_parameters() {
        let all = dead_where(&DeadFilter::default(), 1);
        assert_eq!(all, ("state = 'dead'".to_owned(), vec![]));
        let f = DeadFilter { kind: Some(JobKind::Webhook), batch_id: None, tenant_id: Some("t1".into()) };
        let (sql, binds) = dead_where(&f, 3);
        assert_eq!(sql, "state = 'dead' AND kind = $3 AND tenant_id = $4");
        assert_eq!(binds, ["webhook", "t1"]);
    }
}
