//! OpenAI Batches: `POST /v1/batches` (`/v1/chat/completions` or `/v1/completions`, window
//! `24h`), `GET /v1/batches/{id}`, `GET /v1/batches`, `POST /v1/batches/{id}/cancel`. A batch
//! belongs to the caller's tenant (another tenant gets 404) and runs as the key that created it.
//! Validation of the input file happens at creation: a bad file answers a `failed` batch with
//! its `errors`, as OpenAI does.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_core::jobs::{BatchEndpoint, BatchId, FileId, FilePurpose, NewBatch};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::handlers::decode;
use crate::handlers::files::scope;
use crate::jobs::wire;
use crate::request::RequestCx;
use crate::state::AppState;

/// The only completion window offered (OpenAI's).
const WINDOW: &str = "24h";
const WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    after: Option<String>,
}

pub async fn create(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let req: CreateBatch = decode(body, st.settings.body_limit)?;
    let endpoint = match req.endpoint.parse::<BatchEndpoint>() {
        Ok(e @ (BatchEndpoint::ChatCompletions | BatchEndpoint::Completions)) => e,
        _ => {
            return Err(ApiError::invalid(
                Some("endpoint".into()),
                format!("endpoint '{}' is not supported; use /v1/chat/completions or /v1/completions", req.endpoint),
            ));
        }
    };
    if req.completion_window != WINDOW {
        return Err(ApiError::invalid(Some("completion_window".into()), "completion_window must be '24h'"));
    }
    if req.metadata.as_ref().is_some_and(|m| !m.is_object() && !m.is_null()) {
        return Err(ApiError::invalid(Some("metadata".into()), "metadata must be an object"));
    }
    let input = FileId::from(req.input_file_id.as_str());
    let file = jobs.services.files.get_file(&tenant, &input).await?;
    match file {
        None => return Err(ApiError::not_found("file", &req.input_file_id)),
        Some(f) if f.purpose != FilePurpose::Batch => {
            return Err(ApiError::invalid(Some("input_file_id".into()), "the input file's purpose must be 'batch'"));
        }
        Some(_) => {}
    }
    let key_id = cx.caller.as_ref().and_then(|c| c.principal.key_id().cloned());
    let new = NewBatch {
        tenant_id: tenant,
        key_id,
        endpoint,
        input_file_id: input,
        completion_window_ms: WINDOW_MS,
        metadata: req.metadata.filter(|m| !m.is_null()),
    };
    let batch = jobs.services.batches.create_batch(new).await?;
    // Validates and enqueues the lines (the ticker does it too, should this instance die now).
    let batch = jobs.driver.start(&batch).await?.unwrap_or(batch);
    Ok(Json(wire::batch(&batch)).into_response())
}

pub async fn get(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let b = jobs.services.batches.get_batch(Some(&tenant), &BatchId::from(id.as_str())).await?;
    let b = b.ok_or_else(|| ApiError::not_found("batch", &id))?;
    Ok(Json(wire::batch(&b)).into_response())
}

pub async fn list(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let q = crate::admin::query(q)?;
    let page = wire::ListPage::new(q.after, q.limit, 20, 100);
    let all = jobs.services.batches.list_batches(&tenant, &page.ask).await?;
    Ok(Json(page.answer(all, wire::batch)).into_response())
}

pub async fn cancel(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let moved = jobs.driver.cancel(&tenant, &BatchId::from(id.as_str())).await?;
    let b = moved.ok_or_else(|| ApiError::not_found("batch", &id))?;
    Ok(Json(wire::batch(&b)).into_response())
}
