//! `/admin/v1/tenants`: create, list, get, update, delete. `{id}` is a tenant id or name.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrogate_core::tenancy::{Limits, NewTenant, TenancyStore, Tenant, TenantId, TenantUpdate};
use serde::Deserialize;

use super::{list as list_of, object, tenancy};
use crate::error::ApiError;
use crate::handlers::decode;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    #[serde(default)]
    limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    limits: Option<Limits>,
}

/// The tenant with this id, else with this name; 404 otherwise.
pub async fn resolve(store: &dyn TenancyStore, id_or_name: &str) -> Result<Tenant, ApiError> {
    if let Some(t) = store.get_tenant(&TenantId::from(id_or_name)).await? {
        return Ok(t);
    }
    store.get_tenant_by_name(id_or_name).await?.ok_or_else(|| ApiError::not_found("tenant", id_or_name))
}

pub async fn create(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let req: CreateTenant = decode(body, st.settings.body_limit)?;
    let tenant = t.store.create_tenant(NewTenant { name: req.name, limits: req.limits }).await?;
    Ok((StatusCode::CREATED, Json(object("tenant", &tenant))).into_response())
}

pub async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let all = t.store.list_tenants().await?;
    Ok(Json(list_of(all.iter().map(|x| object("tenant", x)).collect())).into_response())
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let tenant = resolve(t.store.as_ref(), &id).await?;
    Ok(Json(object("tenant", &tenant)).into_response())
}

pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let req: UpdateTenant = decode(body, st.settings.body_limit)?;
    let tenant = resolve(t.store.as_ref(), &id).await?;
    let updated = t.store.update_tenant(&tenant.id, TenantUpdate { name: req.name, limits: req.limits }).await?;
    t.keys.invalidate(&[], std::slice::from_ref(&updated.id));
    Ok(Json(object("tenant", &updated)).into_response())
}

pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let t = tenancy(&st)?;
    let tenant = resolve(t.store.as_ref(), &id).await?;
    t.store.delete_tenant(&tenant.id).await?;
    t.keys.invalidate(&[], std::slice::from_ref(&tenant.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}
