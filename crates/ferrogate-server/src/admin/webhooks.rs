//! `/admin/v1/webhooks`: register an endpoint (`{"url", "events", "tenant_id"?}`; the answer
//! carries its `secret`, shown this once), list, get, delete, and an endpoint's deliveries
//! (`?status=pending|delivered|failed`). Master key only (the auth layer).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrogate_core::jobs::{DeliveryStatus, EndpointId, EventType, NewEndpoint, Page};
use ferrogate_core::tenancy::TenantId;
use serde::Deserialize;
use serde_json::json;

use super::dlq::jobs;
use super::{list as list_of, object, query};
use crate::error::ApiError;
use crate::handlers::decode;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    url: String,
    events: Vec<EventType>,
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn create(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let req: Create = decode(body, st.settings.body_limit)?;
    let j = jobs(&st)?;
    ferrogate_jobs::webhook::check_url(&req.url, j.services.delivery.allow_private_destinations)
        .map_err(|m| ApiError::invalid(Some("url".into()), m))?;
    let new = NewEndpoint { url: req.url, events: req.events, tenant_id: req.tenant_id.map(TenantId::from) };
    new.validate().map_err(|e| ApiError::invalid(None, e.0))?;
    let created = j.services.webhooks.create_endpoint(new).await?;
    let mut v = object("webhook_endpoint", &created.endpoint);
    if let Some(m) = v.as_object_mut() {
        m.insert("secret".into(), created.secret.expose().into());
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let all = jobs(&st)?.services.webhooks.list_endpoints().await?;
    Ok(Json(list_of(all.iter().map(|e| object("webhook_endpoint", e)).collect())).into_response())
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let e = jobs(&st)?.services.webhooks.get_endpoint(&EndpointId::from(id.as_str())).await?;
    let e = e.ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    Ok(Json(object("webhook_endpoint", &e)).into_response())
}

pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !jobs(&st)?.services.webhooks.delete_endpoint(&EndpointId::from(id.as_str())).await? {
        return Err(ApiError::not_found("webhook endpoint", &id));
    }
    Ok(Json(json!({ "id": id, "object": "webhook_endpoint", "deleted": true })).into_response())
}

pub async fn deliveries(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<DeliveryStatus>().map_err(|e| ApiError::invalid(Some("status".into()), e.0))?),
    };
    let j = jobs(&st)?;
    let eid = EndpointId::from(id.as_str());
    if j.services.webhooks.get_endpoint(&eid).await?.is_none() {
        return Err(ApiError::not_found("webhook endpoint", &id));
    }
    let page = Page { after: q.after, limit: q.limit.unwrap_or(100).clamp(1, Page::MAX_LIMIT) };
    let all = j.services.webhooks.list_deliveries(&eid, status, &page).await?;
    Ok(Json(list_of(all.iter().map(|d| object("webhook_delivery", d)).collect())).into_response())
}
