//! Background responses (`POST /v1/responses` with `background: true`): the request is queued as
//! a `response` job owned by the caller's key and tenant, and answered at once with the response
//! object, `status: "queued"`, whose id is the job's (`resp_<uuid>` ↔ `job_<uuid>`). Until the
//! worker stores the finished response (`jobs::respond`), `GET /v1/responses/{id}` shows the
//! job's state (`queued`, `in_progress`, `failed`, `cancelled`); `POST /v1/responses/{id}/cancel`
//! cancels it (queued: at once; running: at the worker's next heartbeat).
//!
//! The job's payload is `{"request": …, "response": …}`: the request as sent and the response
//! object as first answered (its id filled in from the job's when read).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use ferrogate_core::conversations::Owner;
use ferrogate_core::conversations::wire::{self, ResponseError, ResponseStatus, ResponsesRequest};
use ferrogate_core::jobs::{CancelOutcome, EventType, JobKind, JobRecord, JobState, NewJob};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_jobs::background::{job_id_of, response_id};
use ferrogate_jobs::webhook::WebhookEvent;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::handlers::conversations::owner;
use crate::request::RequestCx;
use crate::state::AppState;

/// Runs before batch lines (lower is sooner).
const PRIORITY_BELOW_BATCH: i32 = 50;
/// Runs of one background response before it fails (retryable upstream errors).
const MAX_ATTEMPTS: u32 = 3;

/// Queues `req` (its `background` flag set) and answers the `queued` response object.
pub async fn enqueue(st: &AppState, cx: &RequestCx, req: ResponsesRequest) -> Result<Response, ApiError> {
    let param = Some("background".to_owned());
    let jobs = st.jobs.as_ref().ok_or_else(|| {
        ApiError::invalid(param.clone(), "background responses need the job queue, which runs only with tenancy on")
    })?;
    if !req.stores() {
        return Err(ApiError::invalid(param, "background responses must be stored: drop 'store: false'"));
    }
    if req.is_stream() {
        return Err(ApiError::invalid(Some("stream".into()), "a background response cannot be streamed"));
    }
    let caller = cx.caller.as_ref().map(|c| &c.principal);
    let (Some(tenant), key) = (caller.and_then(|p| p.tenant_id()), caller.and_then(|p| p.key_id())) else {
        return Err(ApiError::unauthorized(
            "Background responses need a tenant's API key (stored keys, not static ones)",
        ));
    };
    // The id is the job's, known once it is stored: the payload's copy is filled in when read.
    let mut response = wire::Response::started("", u64::try_from(now_ms() / 1000).unwrap_or(0), &req);
    response.status = ResponseStatus::Queued;
    let payload = json!({ "request": req, "response": response });
    let job = NewJob {
        kind: JobKind::Response,
        tenant_id: Some(tenant.clone()),
        key_id: key.cloned(),
        payload,
        priority: jobs.services.batch.item_priority - PRIORITY_BELOW_BATCH,
        max_attempts: MAX_ATTEMPTS,
        run_after_ms: None,
        batch_id: None,
        dedupe_key: None,
    };
    let job_id = jobs.services.queue.enqueue(job).await?;
    // The job's run is this request's record (one ledger row, as the owner): nothing here.
    cx.obs.recorded_elsewhere();
    response.id = response_id(&job_id);
    Ok(Json(response).into_response())
}

/// The response object of `id` from its job, while no stored response exists; `None` when `id`
/// is no background response of `owner`'s tenant.
pub async fn pending(st: &AppState, owner: &Owner, id: &str) -> Result<Option<wire::Response>, ApiError> {
    let Some(job) = job_of(st, owner, id).await? else { return Ok(None) };
    Ok(Some(shown(&job)))
}

/// `POST /v1/responses/{id}/cancel`.
pub async fn cancel(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = owner(&cx);
    let job = job_of(&st, &owner, &id).await?.ok_or_else(|| ApiError::not_found("response", &id))?;
    let jobs = st.jobs.as_ref().ok_or_else(|| ApiError::internal("background responses without the job queue"))?;
    let mut response = shown(&job);
    match jobs.services.queue.cancel(&job.id).await? {
        CancelOutcome::Cancelled => {
            // No worker ran it: nobody else announces its end.
            let event = WebhookEvent {
                id: format!("evt_{id}_cancelled"),
                event_type: EventType::ResponseCancelled,
                tenant_id: job.tenant_id.clone(),
                data: json!({ "id": id }),
                created_at: now_ms() / 1000,
            };
            if let Err(e) = jobs.publisher.publish(&event).await {
                tracing::error!(response = %id, error = %e, "could not publish the response's webhook event");
            }
            response.status = ResponseStatus::Cancelled;
        }
        CancelOutcome::Requested => response.status = ResponseStatus::Cancelled,
        CancelOutcome::AlreadyFinished(JobState::Succeeded) => {
            return Err(ApiError::invalid(None, format!("response '{id}' already completed: it cannot be cancelled")));
        }
        CancelOutcome::AlreadyFinished(_) => {}
        CancelOutcome::NotFound => return Err(ApiError::not_found("response", &id)),
    }
    Ok(Json(response).into_response())
}

/// The `response` job behind `id`, if it belongs to `owner`'s tenant.
async fn job_of(st: &AppState, owner: &Owner, id: &str) -> Result<Option<JobRecord>, ApiError> {
    let (Some(jobs), Some(job_id)) = (st.jobs.as_ref(), job_id_of(id)) else { return Ok(None) };
    let job = jobs.services.queue.get(&job_id).await?;
    Ok(job.filter(|j| j.kind == JobKind::Response && j.tenant_id.as_ref() == Some(&owner.tenant)))
}

/// The response object as first answered, with the job's state as its status (and its error).
fn shown(job: &JobRecord) -> wire::Response {
    let first = job.payload.get("response").cloned().unwrap_or(Value::Null);
    let mut response: wire::Response = serde_json::from_value(first).unwrap_or_else(|_| {
        let mut r = wire::Response::started(response_id(&job.id), 0, &ResponsesRequest::default());
        r.background = true;
        r
    });
    response.id = response_id(&job.id);
    response.status = match job.state {
        JobState::Queued => ResponseStatus::Queued,
        JobState::Running => ResponseStatus::InProgress,
        JobState::Succeeded => ResponseStatus::Completed,
        JobState::Failed | JobState::Dead => ResponseStatus::Failed,
        JobState::Cancelled => ResponseStatus::Cancelled,
    };
    if response.status == ResponseStatus::Failed {
        let message = job.last_error.clone().unwrap_or_else(|| "the background response failed".into());
        response.error = Some(ResponseError { code: "server_error".into(), message });
    }
    response
}
