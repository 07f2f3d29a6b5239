//! `/admin/v1/dlq`: the dead-letter queue — list (filter by `kind`, `batch_id`, `tenant_id`;
//! pages by `after`), one entry with its attempt history, replay one or every match (bulk), delete
//! one or purge every match. Master key only (the auth layer).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use ferrogate_core::jobs::{DeadFilter, JobId, JobKind, Page};
use ferrogate_core::tenancy::TenantId;
use serde::Deserialize;
use serde_json::json;

use super::{list as list_of, object, query};
use crate::error::ApiError;
use crate::jobs::services::Jobs;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    batch_id: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

impl Filter {
    fn dead(&self) -> Result<DeadFilter, ApiError> {
        let kind = match self.kind.as_deref() {
            None | Some("") => None,
            Some(k) => Some(k.parse::<JobKind>().map_err(|e| ApiError::invalid(Some("kind".into()), e.0))?),
        };
        Ok(DeadFilter {
            kind,
            batch_id: self.batch_id.clone().filter(|b| !b.is_empty()),
            tenant_id: self.tenant_id.as_deref().filter(|t| !t.is_empty()).map(TenantId::from),
        })
    }
}

pub(crate) fn jobs(st: &AppState) -> Result<&std::sync::Arc<Jobs>, ApiError> {
    st.jobs.as_ref().ok_or_else(|| ApiError::internal("background-work route without its services"))
}

pub async fn list(State(st): State<AppState>, q: Result<Query<Filter>, QueryRejection>) -> Result<Response, ApiError> {
    let q = query(q)?;
    let page = Page { after: q.after.clone(), limit: q.limit.unwrap_or(100).clamp(1, Page::MAX_LIMIT) };
    let dead = jobs(&st)?.services.queue.list_dead(&q.dead()?, &page).await?;
    Ok(Json(list_of(dead.iter().map(|j| object("dead_job", j)).collect())).into_response())
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let detail = jobs(&st)?.services.queue.get_dead(&JobId::from(id.as_str())).await?;
    let detail = detail.ok_or_else(|| ApiError::not_found("dead job", &id))?;
    Ok(Json(object("dead_job", &detail)).into_response())
}

pub async fn replay(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !jobs(&st)?.services.queue.replay(&JobId::from(id.as_str())).await? {
        return Err(ApiError::not_found("dead job", &id));
    }
    Ok(Json(json!({ "id": id, "object": "dead_job", "replayed": true })).into_response())
}

pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !jobs(&st)?.services.queue.delete_dead(&JobId::from(id.as_str())).await? {
        return Err(ApiError::not_found("dead job", &id));
    }
    Ok(Json(json!({ "id": id, "object": "dead_job", "deleted": true })).into_response())
}

/// The body of a bulk replay or purge: the filter (every field optional; `{}` means all).
fn filter_of(body: Result<Bytes, BytesRejection>) -> Result<Filter, ApiError> {
    let body = body.map_err(|e| ApiError::invalid(None, e.body_text()))?;
    if body.is_empty() {
        return Ok(Filter::default());
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid(None, format!("Invalid filter: {e}")))
}

/// `POST /admin/v1/dlq/replay` with a filter body: every match back to the queue.
pub async fn replay_all(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let f = filter_of(body)?.dead()?;
    let n = jobs(&st)?.services.queue.replay_dead(&f).await?;
    Ok(Json(json!({ "object": "dead_job.replay", "replayed": n })).into_response())
}

/// `POST /admin/v1/dlq/purge` with a filter body: every match deleted with its history.
pub async fn purge(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let f = filter_of(body)?.dead()?;
    let n = jobs(&st)?.services.queue.purge_dead(&f).await?;
    Ok(Json(json!({ "object": "dead_job.purge", "deleted": n })).into_response())
}
