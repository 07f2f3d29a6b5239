//! [`KeyStore`] for [`Store`]: key records hold the digest, never the key.

use async_trait::async_trait;
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{
    ApiKey, GeneratedKey, KeyDigest, KeyId, KeyLookup, KeyStore, KeyUpdate, NewKey, NewKeySpec, StoreError, TenantId,
    generate_key, generate_key_with_prefix,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Store;
use crate::error::{corrupt, db_err, is_foreign_key_violation, is_unique_violation};
use crate::tenants::{from_json, tenant_from_row, to_json};

const KEY_COLS: &str =
    "id, tenant_id, name, prefix, scopes, limits, created_at_ms, updated_at_ms, expires_at_ms, revoked_at_ms";

/// Random prefixes (40 bits) may collide in a large deployment; a new draw is cheap.
const GENERATE_ATTEMPTS: usize = 3;

fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let get_str = |name: &str| row.try_get::<String, _>(name).map_err(|e| corrupt("key", e));
    let get_i64 = |name: &str| row.try_get::<i64, _>(name).map_err(|e| corrupt("key", e));
    let get_opt = |name: &str| row.try_get::<Option<i64>, _>(name).map_err(|e| corrupt("key", e));
    Ok(ApiKey {
        id: KeyId::from(get_str("id")?),
        tenant_id: TenantId::from(get_str("tenant_id")?),
        name: get_str("name")?,
        prefix: get_str("prefix")?,
        scopes: from_json("key scopes", &get_str("scopes")?)?,
        limits: from_json("key limits", &get_str("limits")?)?,
        created_at_ms: get_i64("created_at_ms")?,
        updated_at_ms: get_i64("updated_at_ms")?,
        expires_at_ms: get_opt("expires_at_ms")?,
        revoked_at_ms: get_opt("revoked_at_ms")?,
    })
}

fn new_key_material() -> Result<GeneratedKey, StoreError> {
    generate_key().map_err(|e| StoreError::Unavailable(Box::new(e)))
}

fn not_found(id: &KeyId) -> StoreError {
    StoreError::NotFound { what: "key", id: id.to_string() }
}

impl Store {
    /// Inserts the record with fresh key material, drawing again on a (rare) unique collision.
    async fn insert_key(&self, record: &mut ApiKey) -> Result<GeneratedKey, StoreError> {
        let scopes = to_json(&record.scopes)?;
        let limits = to_json(&record.limits)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let material = new_key_material()?;
            let result = sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_digest, scopes, limits, created_at_ms, \
                 updated_at_ms, expires_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
            )
            .bind(record.id.as_str())
            .bind(record.tenant_id.as_str())
            .bind(&record.name)
            .bind(&material.prefix)
            .bind(material.digest.to_hex())
            .bind(&scopes)
            .bind(&limits)
            .bind(record.created_at_ms)
            .bind(record.updated_at_ms)
            .bind(record.expires_at_ms)
            .execute(&self.pool)
            .await;
            match result {
                Ok(_) => {
                    record.prefix.clone_from(&material.prefix);
                    return Ok(material);
                }
                Err(e) if is_foreign_key_violation(&e) => {
                    return Err(StoreError::NotFound { what: "tenant", id: record.tenant_id.to_string() });
                }
                Err(e) if is_unique_violation(&e) && attempt < GENERATE_ATTEMPTS => continue,
                Err(e) => return Err(db_err(e)),
            }
        }
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn create_key(&self, spec: NewKeySpec) -> Result<NewKey, StoreError> {
        spec.validate()?;
        let now = now_ms();
        let mut record = ApiKey {
            id: KeyId::generate(),
            tenant_id: spec.tenant_id,
            name: spec.name,
            prefix: String::new(),
            scopes: spec.scopes,
            limits: spec.limits,
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms: spec.expires_at_ms,
            revoked_at_ms: None,
        };
        let material = self.insert_key(&mut record).await?;
        Ok(NewKey { plaintext: material.plaintext, record })
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.map(|r| key_from_row(&r)).transpose()
    }

    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at_ms, id");
                sqlx::query(&sql).bind(t.as_str()).fetch_all(&self.pool).await
            }
            None => {
                let sql = format!("SELECT {KEY_COLS} FROM api_keys ORDER BY created_at_ms, id");
                sqlx::query(&sql).fetch_all(&self.pool).await
            }
        }
        .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key(&self, id: &KeyId, update: KeyUpdate) -> Result<ApiKey, StoreError> {
        update.validate()?;
        let scopes = update.scopes.as_ref().map(to_json).transpose()?;
        let limits = update.limits.as_ref().map(to_json).transpose()?;
        let (set_expiry, expiry) = match update.expires_at_ms {
            Some(e) => (1_i64, e),
            None => (0, None),
        };
        let sql = format!(
            "UPDATE api_keys SET name = COALESCE($2, name), scopes = COALESCE($3, scopes), \
             limits = COALESCE($4, limits), expires_at_ms = CASE WHEN $5 = 1 THEN $6 ELSE expires_at_ms END, \
             updated_at_ms = $7 WHERE id = $1 RETURNING {KEY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(update.name.as_deref())
            .bind(scopes)
            .bind(limits)
            .bind(set_expiry)
            .bind(expiry)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| key_from_row(&r)).transpose()?.ok_or_else(|| not_found(id))
    }

    async fn rotate_key(&self, id: &KeyId) -> Result<NewKey, StoreError> {
        let revoked = || StoreError::Conflict(format!("key '{id}' is revoked and cannot be rotated"));
        let current = self.get_key(id).await?.ok_or_else(|| not_found(id))?;
        if current.revoked_at_ms.is_some() {
            return Err(revoked());
        }
        // Same record, id and prefix; a new secret, so a new digest: the old key stops matching
        // the moment this commits. `revoked_at_ms IS NULL` keeps a key revoked in between revoked.
        let material = generate_key_with_prefix(&current.prefix).map_err(|e| corrupt("key prefix", e))?;
        let sql = format!(
            "UPDATE api_keys SET key_digest = $2, updated_at_ms = $3 WHERE id = $1 AND revoked_at_ms IS NULL \
             RETURNING {KEY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(material.digest.to_hex())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(revoked)?;
        Ok(NewKey { plaintext: material.plaintext, record: key_from_row(&row)? })
    }

    async fn revoke_key(&self, id: &KeyId) -> Result<ApiKey, StoreError> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2), updated_at_ms = $2 WHERE id = $1 \
             RETURNING {KEY_COLS}"
        );
        let row =
            sqlx::query(&sql).bind(id.as_str()).bind(now_ms()).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.map(|r| key_from_row(&r)).transpose()?.ok_or_else(|| not_found(id))
    }

    async fn lookup_key(&self, digest: &KeyDigest) -> Result<Option<KeyLookup>, StoreError> {
        let sql = "SELECT k.id, k.tenant_id, k.name, k.prefix, k.scopes, k.limits, k.created_at_ms, k.updated_at_ms, \
                   k.expires_at_ms, k.revoked_at_ms, k.key_digest, t.id AS t_id, t.name AS t_name, \
                   t.limits AS t_limits, t.created_at_ms AS t_created_at_ms, t.updated_at_ms AS t_updated_at_ms \
                   FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.key_digest = $1";
        let Some(row) = sqlx::query(sql).bind(digest.to_hex()).fetch_optional(&self.pool).await.map_err(db_err)? else {
            return Ok(None);
        };
        // The index found the row by digest; confirm it in constant time before trusting it.
        let stored: String = row.try_get("key_digest").map_err(|e| corrupt("key", e))?;
        if KeyDigest::from_hex(&stored).is_none_or(|d| d != *digest) {
            return Ok(None);
        }
        Ok(Some(KeyLookup { key: key_from_row(&row)?, tenant: tenant_from_row(&row, "t_")? }))
    }

    async fn keys_changed_since(&self, since_ms: i64) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE updated_at_ms >= $1 ORDER BY updated_at_ms, id");
        let rows = sqlx::query(&sql).bind(since_ms).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }
}
