//! [`WebhookStore`] for [`WebhookRegistry`] (a [`Store`] with the key sealing secrets): endpoints
//! and delivery records.
//!
//! Invariants: the secret is stored sealed ([`SealingKey`]), never in plaintext; it leaves this
//! file only through `create_endpoint` (once, to the admin caller) and `endpoint_secret` (to the
//! deliverer); listings never read the column.

use async_trait::async_trait;
use ferrogate_core::jobs::{
    AttemptReport, CreatedEndpoint, Delivery, DeliveryStatus, EndpointId, EventType, JobId, MessageId, NewEndpoint,
    Page, WebhookEndpoint, WebhookSecret, WebhookStore,
};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{StoreError, TenantId};
use sqlx::Row;
use sqlx::any::AnyRow;

use std::sync::Arc;

use crate::Store;
use crate::error::{corrupt, db_err};
use crate::sealing::SealingKey;
use crate::tenants::{from_json, to_json};

const ENDPOINT_COLS: &str = "id, url, events, tenant_id, created_at_ms";
const DELIVERY_COLS: &str =
    "id, endpoint_id, event_type, job_id, status, attempts, last_status_code, last_error, created_at_ms, updated_at_ms";

fn endpoint_from_row(row: &AnyRow) -> Result<WebhookEndpoint, StoreError> {
    let err = |e| corrupt("webhook endpoint", e);
    Ok(WebhookEndpoint {
        id: EndpointId::from(row.try_get::<String, _>("id").map_err(err)?),
        url: row.try_get("url").map_err(err)?,
        events: from_json("webhook events", &row.try_get::<String, _>("events").map_err(err)?)?,
        tenant_id: row.try_get::<Option<String>, _>("tenant_id").map_err(err)?.map(TenantId::from),
        created_at_ms: row.try_get("created_at_ms").map_err(err)?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let err = |e| corrupt("webhook delivery", e);
    let code: Option<i64> = row.try_get("last_status_code").map_err(err)?;
    Ok(Delivery {
        id: MessageId::from(row.try_get::<String, _>("id").map_err(err)?),
        endpoint_id: EndpointId::from(row.try_get::<String, _>("endpoint_id").map_err(err)?),
        event_type: row.try_get::<String, _>("event_type").map_err(err)?.parse().map_err(|e| corrupt("event", e))?,
        job_id: JobId::from(row.try_get::<String, _>("job_id").map_err(err)?),
        status: row.try_get::<String, _>("status").map_err(err)?.parse().map_err(|e| corrupt("status", e))?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(err)?).map_err(|e| corrupt("attempts", e))?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: row.try_get("last_error").map_err(err)?,
        created_at_ms: row.try_get("created_at_ms").map_err(err)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(err)?,
    })
}

/// Webhook endpoints and deliveries in the [`Store`]'s database, secrets sealed with `key`.
#[derive(Debug, Clone)]
pub struct WebhookRegistry {
    store: Store,
    key: Arc<SealingKey>,
}

impl Store {
    /// The webhook registry on this database, sealing secrets with `key`.
    pub fn webhooks(&self, key: SealingKey) -> WebhookRegistry {
        WebhookRegistry { store: self.clone(), key: Arc::new(key) }
    }
}

#[async_trait]
impl WebhookStore for WebhookRegistry {
    async fn create_endpoint(&self, new: NewEndpoint) -> Result<CreatedEndpoint, StoreError> {
        new.validate()?;
        let secret = WebhookSecret::generate().map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let endpoint = WebhookEndpoint {
            id: EndpointId::generate(),
            url: new.url,
            events: new.events,
            tenant_id: new.tenant_id,
            created_at_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, tenant_id, secret, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(endpoint.id.as_str())
        .bind(&endpoint.url)
        .bind(to_json(&endpoint.events)?)
        .bind(endpoint.tenant_id.as_ref().map(|t| t.as_str().to_owned()))
        .bind(self.key.seal(secret.expose(), endpoint.id.as_str())?)
        .bind(endpoint.created_at_ms)
        .execute(&self.store.pool)
        .await
        .map_err(db_err)?;
        Ok(CreatedEndpoint { endpoint, secret })
    }

    async fn get_endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.store.pool).await.map_err(db_err)?;
        row.map(|r| endpoint_from_row(&r)).transpose()
    }

    async fn list_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLS} FROM webhook_endpoints ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.store.pool).await.map_err(db_err)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.store.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn endpoint_secret(&self, id: &EndpointId) -> Result<Option<(WebhookEndpoint, WebhookSecret)>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLS}, secret FROM webhook_endpoints WHERE id = $1");
        let Some(row) = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.store.pool).await.map_err(db_err)?
        else {
            return Ok(None);
        };
        let sealed: String = row.try_get("secret").map_err(|e| corrupt("webhook secret", e))?;
        let secret = self.key.open(&sealed, id.as_str())?;
        let secret = WebhookSecret::parse(&secret).map_err(|e| corrupt("webhook secret", e))?;
        Ok(Some((endpoint_from_row(&row)?, secret)))
    }

    async fn subscribers(
        &self,
        event: EventType,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLS} FROM webhook_endpoints WHERE tenant_id IS NULL OR tenant_id = $1 ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.map(|t| t.as_str().to_owned()))
            .fetch_all(&self.store.pool)
            .await
            .map_err(db_err)?;
        let all = rows.iter().map(endpoint_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(all.into_iter().filter(|e| e.events.contains(&event)).collect())
    }

    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError> {
        let mut tx = self.store.pool.begin().await.map_err(db_err)?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_type, job_id, status, attempts, \
                 last_status_code, last_error, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(d.id.as_str())
            .bind(d.endpoint_id.as_str())
            .bind(d.event_type.as_str())
            .bind(d.job_id.as_str())
            .bind(d.status.as_str())
            .bind(i64::from(d.attempts))
            .bind(d.last_status_code.map(i64::from))
            .bind(d.last_error.clone())
            .bind(d.created_at_ms)
            .bind(d.updated_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn record_attempt(&self, id: &MessageId, report: &AttemptReport) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, last_status_code = $3, \
             last_error = $4, updated_at_ms = $5 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(report.status.as_str())
        .bind(report.status_code.map(i64::from))
        .bind(report.error.clone())
        .bind(now_ms())
        .execute(&self.store.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.store.pool).await.map_err(db_err)?;
        row.map(|r| delivery_from_row(&r)).transpose()
    }

    async fn list_deliveries(
        &self,
        endpoint: &EndpointId,
        status: Option<DeliveryStatus>,
        page: &Page,
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE endpoint_id = $1 AND id > $2 \
             AND ($3 = '' OR status = $3) ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(endpoint.as_str())
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(status.map_or("", |s| s.as_str()))
            .bind(i64::from(page.capped_limit()))
            .fetch_all(&self.store.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(delivery_from_row).collect()
    }
}
