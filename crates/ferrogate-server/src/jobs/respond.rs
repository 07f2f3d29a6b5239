//! A `response` job (a background response, `handlers::background`): its request runs through
//! the same [`responses::turn`] as a live, non-streaming `POST /v1/responses`, as its owner (the
//! key's scopes, limits and budgets; one usage-ledger row) at batch priority, under the response
//! id made when it was queued; the turn stores the finished response, which `GET
//! /v1/responses/{id}` then returns. A cancel stops the run at the worker's next heartbeat.

use axum::response::IntoResponse;
use ferrogate_core::conversations::ResponseId;
use ferrogate_core::conversations::wire::ResponsesRequest;
use ferrogate_core::jobs::LeasedJob;
use ferrogate_jobs::JobError;
use ferrogate_jobs::background::response_id;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::runner::EdgeRunner;
use crate::handlers::responses;
use crate::request::Endpoint;

/// Largest response body read back from the turn.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

impl EdgeRunner {
    pub(super) async fn response(&self, job: &LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        let mut req: ResponsesRequest = job
            .payload
            .get("request")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .ok_or_else(|| JobError::poison("unreadable background response payload"))?;
        // Answered whole: nobody listens to a stream.
        req.stream = None;
        let id = response_id(job.id());
        let rid = ResponseId::parse(&id).ok_or_else(|| JobError::poison(format!("bad response id '{id}'")))?;
        let owner = match self.owner(job).await? {
            Ok(owner) => owner,
            Err(refused) => {
                let m = refused.message.clone();
                return Err(JobError::failed(m, json!({ "error": refused.code.as_str() })));
            }
        };
        let request_id = job.id().as_str().replacen("job_", "", 1);
        let cx = self.context(&request_id, Endpoint::Responses, owner, "/v1/responses");
        let st = self.st.clone();
        let call =
            async move { responses::turn(&st, &cx, &req, Some(rid)).await.unwrap_or_else(IntoResponse::into_response) };
        let res = tokio::select! {
            r = call => r,
            _ = cancel.cancelled() => return Err(JobError::retryable("cancelled before the answer")),
        };
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|e| JobError::retryable(format!("reading the answer: {e}")))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        let message = || {
            let m = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
            format!("HTTP {status}: {m}")
        };
        match status {
            // The turn stored the response; the job keeps only its id and status.
            200..=299 => Ok(json!({ "id": id, "status": body.get("status").cloned().unwrap_or(Value::Null) })),
            408 | 409 | 429 => Err(JobError::retryable(message())),
            400..=499 => Err(JobError::failed(message(), body.clone())),
            _ => Err(JobError::retryable(message())),
        }
    }
}
