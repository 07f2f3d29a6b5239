//! `/admin/v1/keys`: create (the plaintext is in this response only), list, get, update, rotate
//! (a new secret, same id and prefix; the plaintext again once), revoke. Keys are revoked, never
//! deleted: the ledger keeps naming them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrogate_core::tenancy::{ApiKey, KeyId, KeyStatus, KeyUpdate, Limits, NewKey, NewKeySpec, Scopes};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::tenants::resolve;
use super::{list as list_of, object, query, tenancy};
use crate::error::ApiError;
use crate::handlers::decode;
use crate::state::AppState;
use crate::tenancy::Tenancy;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    /// Tenant id or name.
    tenant: String,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    scopes: Scopes,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    expires_at_ms: Option<i64>,
}

fn default_name() -> String {
    "default".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Option<Scopes>,
    #[serde(default)]
    limits: Option<Limits>,
    /// Absent: unchanged; `null`: never expires; a number: unix ms.
    #[serde(default, deserialize_with = "present")]
    expires_at_ms: Option<Option<i64>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListKeys {
    /// Only this tenant's keys (id or name).
    #[serde(default)]
    tenant: Option<String>,
}

/// A key record as the API shows it: never the secret or its digest; with its status.
pub fn key_json(k: &ApiKey, now_ms: i64) -> Value {
    let mut v = object("api_key", k);
    let status = match k.status(now_ms) {
        KeyStatus::Active => "active",
        KeyStatus::Revoked => "revoked",
        KeyStatus::Expired => "expired",
    };
    v["status"] = Value::from(status);
    v
}

/// On the responses carrying a key's plaintext: no cache (browser, proxy) may keep them.
const NO_STORE: [(header::HeaderName, &str); 2] = [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")];

fn with_secret(t: &Tenancy, new: &NewKey) -> Value {
    let mut v = key_json(&new.record, t.now_ms());
    v["key"] = Value::from(new.plaintext.expose_secret());
    v
}

pub async fn create(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let req: CreateKey = decode(body, st.settings.body_limit)?;
    let tenant = resolve(t.store.as_ref(), &req.tenant).await?;
    let spec = NewKeySpec {
        tenant_id: tenant.id,
        name: req.name,
        scopes: req.scopes,
        limits: req.limits,
        expires_at_ms: req.expires_at_ms,
    };
    let new = t.store.create_key(spec).await?;
    tracing::info!(key = %new.record.prefix, tenant = %tenant.name, "API key created");
    Ok((StatusCode::CREATED, NO_STORE, Json(with_secret(t, &new))).into_response())
}

pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<ListKeys>, QueryRejection>,
) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let q = query(q)?;
    let tenant = match &q.tenant {
        Some(id) => Some(resolve(t.store.as_ref(), id).await?.id),
        None => None,
    };
    let keys = t.store.list_keys(tenant.as_ref()).await?;
    let now = t.now_ms();
    Ok(Json(list_of(keys.iter().map(|k| key_json(k, now)).collect())).into_response())
}

async fn find(t: &Tenancy, id: &str) -> Result<ApiKey, ApiError> {
    t.store.get_key(&KeyId::from(id)).await?.ok_or_else(|| ApiError::not_found("key", id))
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let k = find(t, &id).await?;
    Ok(Json(key_json(&k, t.now_ms())).into_response())
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let req: UpdateKey = decode(body, st.settings.body_limit)?;
    let id = find(t, &id).await?.id;
    let update = KeyUpdate { name: req.name, scopes: req.scopes, limits: req.limits, expires_at_ms: req.expires_at_ms };
    let k = t.store.update_key(&id, update).await?;
    t.keys.invalidate(std::slice::from_ref(&k.id), &[]);
    Ok(Json(key_json(&k, t.now_ms())).into_response())
}

pub async fn rotate(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let id = find(t, &id).await?.id;
    let new = t.store.rotate_key(&id).await?;
    t.keys.invalidate(std::slice::from_ref(&id), &[]);
    tracing::info!(key = %new.record.prefix, "API key rotated");
    Ok((NO_STORE, Json(with_secret(t, &new))).into_response())
}

pub async fn revoke(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let id = find(t, &id).await?.id;
    let k = t.store.revoke_key(&id).await?;
    t.keys.invalidate(std::slice::from_ref(&id), &[]);
    tracing::info!(key = %k.prefix, "API key revoked");
    Ok(Json(key_json(&k, t.now_ms())).into_response())
}
