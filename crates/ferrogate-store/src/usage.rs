//! [`UsageStore`] for [`Store`]: batched idempotent inserts (keyed by the server-made row id, so
//! a retried batch writes nothing twice and a repeated client request id still gets its rows)
//! and grouped sums.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use async_trait::async_trait;
use ferrogate_core::tenancy::{
    GroupBy, InvalidInput, StoreError, UsageQuery, UsageRecord, UsageRow, UsageStore, UsageSubject, UsageTotals,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Store;
use crate::error::{corrupt, db_err};

const LEDGER_COLS: &str = "id, request_id, tenant_id, key_id, endpoint, model_requested, model_served, backend, \
     prompt_tokens, cached_prompt_tokens, completion_tokens, latency_ms, ttft_ms, http_status, error_type, streamed, \
     cancelled, created_at_ms, cache_hit";
const LEDGER_COL_COUNT: usize = 19;

/// Rows per INSERT statement: 32 × 18 = 576 parameters. Kept small on purpose: SQLite resolves
/// `$N` parameters by name with a linear scan, so preparing and binding one statement costs
/// O(parameters²) — 500 rows per statement (8 500 parameters) made the ledger write ~2 500 rows/s
/// on a core, slower than the gateway serves requests. Full-size statements are prepared once
/// per connection and reused.
pub(crate) const ROWS_PER_STATEMENT: usize = 32;

/// The sums of a report, in [`UsageTotals`] order. `CAST … AS BIGINT`: PostgreSQL's SUM of a
/// BIGINT is NUMERIC, which sqlx's Any driver cannot read.
const TOTALS: &str = "COUNT(*) AS requests, \
     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
     CAST(COALESCE(SUM(cached_prompt_tokens), 0) AS BIGINT) AS cached_tokens, \
     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
     CAST(COALESCE(SUM(CASE WHEN http_status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
     AS errors, \
     CAST(COALESCE(SUM(cancelled), 0) AS BIGINT) AS cancelled";

/// PostgreSQL refuses NUL in text, and a client can put one in a model name: the row must still
/// be written (one row per request), so NULs become U+FFFD, on both engines alike.
fn without_nul(r: &UsageRecord) -> Cow<'_, UsageRecord> {
    let texts = [Some(r.id.as_str()), Some(&r.request_id), Some(&r.endpoint), Some(&r.model_requested)]
        .into_iter()
        .chain([r.model_served.as_deref(), r.backend.as_deref(), r.error_type.as_deref()])
        .chain([r.tenant_id.as_ref().map(|t| t.as_str()), r.key_id.as_ref().map(|k| k.as_str())]);
    if !texts.flatten().any(|t| t.contains('\0')) {
        return Cow::Borrowed(r);
    }
    let clean = |s: &str| s.replace('\0', "\u{fffd}");
    let mut r = r.clone();
    for s in [&mut r.id, &mut r.request_id, &mut r.endpoint, &mut r.model_requested] {
        *s = clean(s);
    }
    for s in [&mut r.model_served, &mut r.backend, &mut r.error_type].into_iter().flatten() {
        *s = clean(s);
    }
    r.tenant_id = r.tenant_id.map(|t| clean(t.as_str()).into());
    r.key_id = r.key_id.map(|k| clean(k.as_str()).into());
    Cow::Owned(r)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn totals_from_row(row: &AnyRow) -> Result<UsageTotals, StoreError> {
    let get = |name: &str| {
        row.try_get::<i64, _>(name).map(|v| u64::try_from(v).unwrap_or(0)).map_err(|e| corrupt("usage sums", e))
    };
    Ok(UsageTotals {
        requests: get("requests")?,
        prompt_tokens: get("prompt_tokens")?,
        cached_tokens: get("cached_tokens")?,
        completion_tokens: get("completion_tokens")?,
        errors: get("errors")?,
        cancelled: get("cancelled")?,
    })
}

/// `INSERT … VALUES ($1 … $18), ($19 …) … ON CONFLICT (id) DO NOTHING` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage_ledger ({LEDGER_COLS}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..LEDGER_COL_COUNT {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", r * LEDGER_COL_COUNT + c + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

/// The SQL expression a report groups by; time buckets are integers, the rest text.
fn group_expr(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::Tenant => "COALESCE(tenant_id, '')",
        GroupBy::Key => "COALESCE(key_id, '')",
        GroupBy::Model => "model_requested",
        GroupBy::Backend => "COALESCE(backend, '')",
        GroupBy::Hour => "(created_at_ms - created_at_ms % 3600000)",
        GroupBy::Day => "(created_at_ms - created_at_ms % 86400000)",
    }
}

#[async_trait]
impl UsageStore for Store {
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<u64, StoreError> {
        // Repeats of a row id inside one batch are dropped here (first wins), so one statement
        // never names an id twice; repeats across batches (a retry) are dropped by ON CONFLICT.
        let mut seen = HashSet::with_capacity(rows.len());
        let unique: Vec<Cow<'_, UsageRecord>> =
            rows.iter().filter(|r| seen.insert(r.id.as_str())).map(without_nul).collect();
        if unique.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut inserted = 0;
        for chunk in unique.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.id.as_str())
                    .bind(r.request_id.as_str())
                    .bind(r.tenant_id.as_ref().map(|t| t.as_str()))
                    .bind(r.key_id.as_ref().map(|k| k.as_str()))
                    .bind(r.endpoint.as_str())
                    .bind(r.model_requested.as_str())
                    .bind(r.model_served.as_deref())
                    .bind(r.backend.as_deref())
                    .bind(int(r.prompt_tokens))
                    .bind(int(r.cached_prompt_tokens))
                    .bind(int(r.completion_tokens))
                    .bind(int(r.latency_ms))
                    .bind(r.ttft_ms.map(int))
                    .bind(i64::from(r.http_status))
                    .bind(r.error_type.as_deref())
                    .bind(i64::from(r.streamed))
                    .bind(i64::from(r.cancelled))
                    .bind(r.created_at_ms)
                    .bind(i64::from(r.cache_hit));
            }
            // Full chunks share one prepared statement; the odd-sized tail is not cached.
            let persistent = chunk.len() == ROWS_PER_STATEMENT;
            inserted += q.persistent(persistent).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    async fn query_usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        if query.from_ms > query.to_ms {
            return Err(InvalidInput(format!("usage window from {} is after to {}", query.from_ms, query.to_ms)).into());
        }
        let mut sql = format!(
            "SELECT {} AS grp, {TOTALS} FROM usage_ledger WHERE created_at_ms >= $1 AND created_at_ms < $2",
            group_expr(query.group_by)
        );
        let mut n = 2;
        for (col, set) in [("tenant_id", query.tenant.is_some()), ("key_id", query.key.is_some())] {
            if set {
                n += 1;
                let _ = write!(sql, " AND {col} = ${n}");
            }
        }
        sql.push_str(" GROUP BY grp");
        let mut q = sqlx::query(&sql).bind(query.from_ms).bind(query.to_ms);
        if let Some(t) = &query.tenant {
            q = q.bind(t.as_str());
        }
        if let Some(k) = &query.key {
            q = q.bind(k.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db_err)?;
        let mut report = rows
            .iter()
            .map(|row| {
                let group = match query.group_by.bucket_ms() {
                    Some(_) => {
                        query.group_by.bucket_label(row.try_get::<i64, _>("grp").map_err(|e| corrupt("group", e))?)
                    }
                    None => row.try_get::<String, _>("grp").map_err(|e| corrupt("group", e))?,
                };
                Ok(UsageRow { group, totals: totals_from_row(row)? })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here, by bytes: database collations order text differently. Time labels are
        // ISO 8601, so they sort chronologically too.
        report.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(report)
    }

    async fn usage_since(&self, subject: &UsageSubject, since_ms: i64) -> Result<UsageTotals, StoreError> {
        let (col, id) = match subject {
            UsageSubject::Tenant(t) => ("tenant_id", t.as_str()),
            UsageSubject::Key(k) => ("key_id", k.as_str()),
        };
        let sql = format!("SELECT {TOTALS} FROM usage_ledger WHERE {col} = $1 AND created_at_ms >= $2");
        let row = sqlx::query(&sql).bind(id).bind(since_ms).fetch_one(&self.pool).await.map_err(db_err)?;
        totals_from_row(&row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_parameter_once() {
        let sql = insert_sql(2);
        assert!(sql.contains("VALUES ($1, $2, "), "{sql}");
        assert!(sql.contains("$19), ($20, "), "{sql}");
        assert!(sql.ends_with("$38) ON CONFLICT (id) DO NOTHING"), "{sql}");
    }
}
