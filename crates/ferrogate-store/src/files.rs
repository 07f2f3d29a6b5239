//! [`FileStore`] for [`Store`]: file contents in the database, reads always scoped to a tenant.
//!
//! The quota is checked in the insert itself (`INSERT … SELECT … WHERE used + size <= quota`);
//! concurrent uploads of one tenant on PostgreSQL may overshoot it by the uploads in flight.

use async_trait::async_trait;
use ferrogate_core::jobs::files::quota_exceeded;
use ferrogate_core::jobs::{FileId, FileLimits, FileObject, FilePurpose, FileStore, NewFile, Page};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{StoreError, TenantId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Store;
use crate::error::{corrupt, db_err};

const FILE_COLS: &str = "id, tenant_id, purpose, filename, bytes, created_at_ms";

fn file_from_row(row: &AnyRow) -> Result<FileObject, StoreError> {
    let err = |e| corrupt("file", e);
    Ok(FileObject {
        id: FileId::from(row.try_get::<String, _>("id").map_err(err)?),
        tenant_id: TenantId::from(row.try_get::<String, _>("tenant_id").map_err(err)?),
        purpose: row.try_get::<String, _>("purpose").map_err(err)?.parse().map_err(|e| corrupt("purpose", e))?,
        filename: row.try_get("filename").map_err(err)?,
        bytes: u64::try_from(row.try_get::<i64, _>("bytes").map_err(err)?).map_err(|e| corrupt("bytes", e))?,
        created_at_ms: row.try_get("created_at_ms").map_err(err)?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Inserts the file under `id` within the tenant's quota; `None` if the id exists.
    async fn insert_file(
        &self,
        id: &FileId,
        new: NewFile,
        limits: &FileLimits,
    ) -> Result<Option<FileObject>, StoreError> {
        new.validate(limits)?;
        let file = FileObject {
            id: id.clone(),
            tenant_id: new.tenant_id,
            purpose: new.purpose,
            filename: new.filename,
            bytes: u64::try_from(new.content.len()).unwrap_or(u64::MAX),
            created_at_ms: now_ms(),
        };
        // SQLite parses an upsert after INSERT … SELECT only when the SELECT has a WHERE: it does.
        let done = sqlx::query(
            "INSERT INTO files (id, tenant_id, purpose, filename, bytes, content, created_at_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COALESCE(SUM(bytes), 0) FROM files WHERE tenant_id = $2) + $5 <= $8 \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(file.id.as_str())
        .bind(file.tenant_id.as_str())
        .bind(file.purpose.as_str())
        .bind(&file.filename)
        .bind(to_i64(file.bytes))
        .bind(&new.content)
        .bind(file.created_at_ms)
        .bind(to_i64(limits.tenant_quota_bytes))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 1 {
            return Ok(Some(file));
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM files WHERE id = $1")
            .bind(file.id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        if exists.is_some() {
            return Ok(None);
        }
        let used = self.tenant_file_bytes(&file.tenant_id).await?;
        Err(quota_exceeded(used, file.bytes, limits.tenant_quota_bytes).into())
    }
}

#[async_trait]
impl FileStore for Store {
    async fn create_file(&self, new: NewFile, limits: &FileLimits) -> Result<FileObject, StoreError> {
        let file = self.insert_file(&FileId::generate(), new, limits).await?;
        file.ok_or_else(|| StoreError::Conflict("a fresh file id was taken".into()))
    }

    async fn create_file_once(&self, id: &FileId, new: NewFile, limits: &FileLimits) -> Result<FileObject, StoreError> {
        let tenant = new.tenant_id.clone();
        match self.insert_file(id, new, limits).await? {
            Some(file) => Ok(file),
            None => {
                self.get_file(&tenant, id).await?.ok_or_else(|| StoreError::Conflict(format!("file id {id} is taken")))
            }
        }
    }

    async fn get_file(&self, tenant: &TenantId, id: &FileId) -> Result<Option<FileObject>, StoreError> {
        let sql = format!("SELECT {FILE_COLS} FROM files WHERE id = $1 AND tenant_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| file_from_row(&r)).transpose()
    }

    async fn file_content(&self, tenant: &TenantId, id: &FileId) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT content FROM files WHERE id = $1 AND tenant_id = $2")
            .bind(id.as_str())
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn list_files(
        &self,
        tenant: &TenantId,
        purpose: Option<FilePurpose>,
        page: &Page,
    ) -> Result<Vec<FileObject>, StoreError> {
        let sql = format!(
            "SELECT {FILE_COLS} FROM files WHERE tenant_id = $1 AND id > $2 AND ($3 = '' OR purpose = $3) \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(purpose.map_or("", |p| p.as_str()))
            .bind(i64::from(page.capped_limit()))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(file_from_row).collect()
    }

    async fn delete_file(&self, tenant: &TenantId, id: &FileId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM files WHERE id = $1 AND tenant_id = $2")
            .bind(id.as_str())
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn tenant_file_bytes(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let used: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM files WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(u64::try_from(used).unwrap_or(0))
    }
}
