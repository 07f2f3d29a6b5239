//! [`BatchStore`] for [`Store`]: batch records; status changes are conditional updates from the
//! expected status, so concurrent drivers on several instances move a batch once.

use async_trait::async_trait;
use ferrogate_core::jobs::{
    Batch, BatchChanges, BatchId, BatchStatus, BatchStore, FileId, NewBatch, Page, RequestCounts, StatusTimes,
};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{InvalidInput, KeyId, StoreError, TenantId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Store;
use crate::error::{corrupt, db_err};
use crate::tenants::{from_json, to_json};

const BATCH_COLS: &str = "id, tenant_id, key_id, endpoint, input_file_id, completion_window, status, output_file_id, \
     error_file_id, errors, request_total, request_completed, request_failed, metadata, times, created_at_ms, \
     expires_at_ms";

fn batch_from_row(row: &AnyRow) -> Result<Batch, StoreError> {
    let err = |e| corrupt("batch", e);
    let s = |name: &str| row.try_get::<String, _>(name).map_err(err);
    let opt = |name: &str| row.try_get::<Option<String>, _>(name).map_err(err);
    let n = |name: &str| row.try_get::<i64, _>(name).map_err(err).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(Batch {
        id: BatchId::from(s("id")?),
        tenant_id: TenantId::from(s("tenant_id")?),
        key_id: opt("key_id")?.map(KeyId::from),
        endpoint: s("endpoint")?.parse().map_err(|e| corrupt("batch endpoint", e))?,
        input_file_id: FileId::from(s("input_file_id")?),
        completion_window: s("completion_window")?,
        status: s("status")?.parse().map_err(|e| corrupt("batch status", e))?,
        output_file_id: opt("output_file_id")?.map(FileId::from),
        error_file_id: opt("error_file_id")?.map(FileId::from),
        errors: from_json("batch errors", &s("errors")?)?,
        request_counts: RequestCounts {
            total: n("request_total")?,
            completed: n("request_completed")?,
            failed: n("request_failed")?,
        },
        metadata: opt("metadata")?.map(|m| from_json("batch metadata", &m)).transpose()?,
        times: from_json("batch times", &s("times")?)?,
        created_at_ms: row.try_get("created_at_ms").map_err(err)?,
        expires_at_ms: row.try_get("expires_at_ms").map_err(err)?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl BatchStore for Store {
    async fn create_batch(&self, new: NewBatch) -> Result<Batch, StoreError> {
        let now = now_ms();
        let batch = Batch {
            id: BatchId::generate(),
            tenant_id: new.tenant_id,
            key_id: new.key_id,
            endpoint: new.endpoint,
            input_file_id: new.input_file_id,
            completion_window: format!("{}h", new.completion_window_ms / 3_600_000),
            status: BatchStatus::Validating,
            output_file_id: None,
            error_file_id: None,
            errors: Vec::new(),
            request_counts: RequestCounts::default(),
            metadata: new.metadata,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(new.completion_window_ms),
            times: StatusTimes::default(),
        };
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, key_id, endpoint, input_file_id, completion_window, status, errors, \
             request_total, request_completed, request_failed, metadata, times, created_at_ms, expires_at_ms, \
             updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, '[]', 0, 0, 0, $8, $9, $10, $11, $10)",
        )
        .bind(batch.id.as_str())
        .bind(batch.tenant_id.as_str())
        .bind(batch.key_id.as_ref().map(|k| k.as_str().to_owned()))
        .bind(batch.endpoint.as_str())
        .bind(batch.input_file_id.as_str())
        .bind(&batch.completion_window)
        .bind(batch.status.as_str())
        .bind(batch.metadata.as_ref().map(to_json).transpose()?)
        .bind(to_json(&batch.times)?)
        .bind(now)
        .bind(batch.expires_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(batch)
    }

    async fn get_batch(&self, tenant: Option<&TenantId>, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let sql = format!("SELECT {BATCH_COLS} FROM batches WHERE id = $1 AND ($2 = '' OR tenant_id = $2)");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(tenant.map_or("", |t| t.as_str()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| batch_from_row(&r)).transpose()
    }

    async fn list_batches(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Batch>, StoreError> {
        // Newest first: the cursor is the last id of the previous page; ids sort by creation.
        let sql = format!(
            "SELECT {BATCH_COLS} FROM batches WHERE tenant_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(i64::from(page.capped_limit()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn batches_in(&self, status: BatchStatus, limit: u32) -> Result<Vec<Batch>, StoreError> {
        let sql = format!("SELECT {BATCH_COLS} FROM batches WHERE status = $1 ORDER BY created_at_ms, id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(i64::from(limit.min(Page::MAX_LIMIT)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn transition(
        &self,
        id: &BatchId,
        from: BatchStatus,
        to: BatchStatus,
        changes: BatchChanges,
    ) -> Result<Option<Batch>, StoreError> {
        if !from.can_move_to(to) {
            let msg = format!("a batch cannot go from {} to {}", from.as_str(), to.as_str());
            return Err(InvalidInput(msg).into());
        }
        let Some(current) = self.get_batch(None, id).await?.filter(|b| b.status == from) else {
            return Ok(None);
        };
        let now = now_ms();
        let mut times = current.times;
        times.enter(to, now);
        let counts = changes.request_counts.unwrap_or(current.request_counts);
        let errors = changes.errors.unwrap_or(current.errors);
        let sql = format!(
            "UPDATE batches SET status = $3, times = $4, request_total = $5, request_completed = $6, \
             request_failed = $7, errors = $8, output_file_id = COALESCE($9, output_file_id), \
             error_file_id = COALESCE($10, error_file_id), updated_at_ms = $11 WHERE id = $1 AND status = $2 \
             RETURNING {BATCH_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(to_json(&times)?)
            .bind(to_i64(counts.total))
            .bind(to_i64(counts.completed))
            .bind(to_i64(counts.failed))
            .bind(to_json(&errors)?)
            .bind(changes.output_file_id.map(|f| f.as_str().to_owned()))
            .bind(changes.error_file_id.map(|f| f.as_str().to_owned()))
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| batch_from_row(&r)).transpose()
    }

    async fn set_counts(&self, id: &BatchId, counts: RequestCounts) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batches SET request_total = $2, request_completed = $3, request_failed = $4, updated_at_ms = $5 \
             WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(to_i64(counts.total))
        .bind(to_i64(counts.completed))
        .bind(to_i64(counts.failed))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }
}
