//! [`TenantStore`] for [`Store`].

use async_trait::async_trait;
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{Limits, NewTenant, StoreError, Tenant, TenantId, TenantStore, TenantUpdate};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Store;
use crate::error::{corrupt, db_err, is_foreign_key_violation, is_unique_violation};

pub(crate) const TENANT_COLS: &str = "id, name, limits, created_at_ms, updated_at_ms";

/// Reads a tenant from columns named with `prefix` (`""`, or `"t_"` in the key lookup join).
pub(crate) fn tenant_from_row(row: &AnyRow, prefix: &str) -> Result<Tenant, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    let get_str = |name: &str| row.try_get::<String, _>(col(name).as_str()).map_err(|e| corrupt("tenant", e));
    let get_i64 = |name: &str| row.try_get::<i64, _>(col(name).as_str()).map_err(|e| corrupt("tenant", e));
    Ok(Tenant {
        id: TenantId::from(get_str("id")?),
        name: get_str("name")?,
        limits: from_json("tenant limits", &get_str("limits")?)?,
        created_at_ms: get_i64("created_at_ms")?,
        updated_at_ms: get_i64("updated_at_ms")?,
    })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| corrupt(what, e))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(Box::new(e)))
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict(format!("tenant name '{name}' is taken"))
}

fn not_found(id: &TenantId) -> StoreError {
    StoreError::NotFound { what: "tenant", id: id.to_string() }
}

#[async_trait]
impl TenantStore for Store {
    async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, StoreError> {
        new.validate()?;
        let now = now_ms();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: new.name,
            limits: new.limits,
            created_at_ms: now,
            updated_at_ms: now,
        };
        sqlx::query("INSERT INTO tenants (id, name, limits, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(to_json(&tenant.limits)?)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| if is_unique_violation(&e) { name_taken(&tenant.name) } else { db_err(e) })?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.map(|r| tenant_from_row(&r, "")).transpose()
    }

    async fn get_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE name = $1");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.map(|r| tenant_from_row(&r, "")).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants ORDER BY created_at_ms, id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(|r| tenant_from_row(r, "")).collect()
    }

    async fn update_tenant(&self, id: &TenantId, update: TenantUpdate) -> Result<Tenant, StoreError> {
        update.validate()?;
        let limits = update.limits.as_ref().map(to_json::<Limits>).transpose()?;
        let sql = format!(
            "UPDATE tenants SET name = COALESCE($2, name), limits = COALESCE($3, limits), updated_at_ms = $4 \
             WHERE id = $1 RETURNING {TENANT_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(update.name.as_deref())
            .bind(limits)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| match (&update.name, is_unique_violation(&e)) {
                (Some(name), true) => name_taken(name),
                _ => db_err(e),
            })?;
        row.map(|r| tenant_from_row(&r, "")).transpose()?.ok_or_else(|| not_found(id))
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<(), StoreError> {
        let has_keys = || StoreError::Conflict(format!("tenant '{id}' still has active keys: revoke them first"));
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Write first: SQLite then takes the write lock up front (waiting out other writers)
        // instead of failing to upgrade a read snapshot. Only revoked keys go; the transaction
        // is rolled back below if any active key remains.
        sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND revoked_at_ms IS NOT NULL")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1")
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if active > 0 {
            return Err(has_keys()); // dropping `tx` rolls back
        }
        // A key created since the count makes the foreign key refuse this.
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| if is_foreign_key_violation(&e) { has_keys() } else { db_err(e) })?;
        if deleted.rows_affected() == 0 {
            return Err(not_found(id));
        }
        tx.commit().await.map_err(|e| if is_foreign_key_violation(&e) { has_keys() } else { db_err(e) })
    }

    async fn tenants_changed_since(&self, since_ms: i64) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLS} FROM tenants WHERE updated_at_ms >= $1 ORDER BY updated_at_ms, id");
        let rows = sqlx::query(&sql).bind(since_ms).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(|r| tenant_from_row(r, "")).collect()
    }
}
