//! The server's [`Runner`]: a `batch_item` job is its line's request, sent through the same
//! handler and `pipeline::run` as a live request, as the batch's owner (its key's scopes, limits
//! and budgets; one usage-ledger row) at batch priority; a `webhook` job is delivered by
//! [`Deliverer`]; a `response` job (a background response) runs as `jobs::respond` says.
//!
//! A 2xx answer is the line's output; a 4xx (other than 408/409/429) is its final error answer;
//! 408, 409, 429 and 5xx are retried with backoff and end in the DLQ after the last attempt.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use ferrogate_core::jobs::{JobKind, LeasedJob, WebhookStore};
use ferrogate_core::tenancy::{KeyLookup, KeyStatus};
use ferrogate_jobs::batch::{BatchItemJob, ItemResponse};
use ferrogate_jobs::webhook::{Deliverer, DeliveryConfig};
use ferrogate_jobs::{JobError, Runner};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::access::Unsettled;
use crate::error::{ApiError, ErrorLog};
use crate::handlers::{chat, completions};
use crate::request::caller::{Caller, Principal, RequestMeter};
use crate::request::{Endpoint, RequestCx};
use crate::resilience::hints::{PRIORITY_HEADER, RouteHints};
use crate::state::AppState;

/// Largest answer body kept for a batch line.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

pub struct EdgeRunner {
    pub(super) st: AppState,
    deliverer: Deliverer,
}

impl EdgeRunner {
    pub fn new(st: AppState, delivery: &DeliveryConfig, hooks: Arc<dyn WebhookStore>) -> Result<Self, String> {
        let deliverer = Deliverer::new(hooks, delivery).map_err(|e| format!("webhook client: {e}"))?;
        Ok(Self { st, deliverer })
    }

    async fn batch_item(&self, job: &LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        let item: BatchItemJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::poison(format!("unreadable batch item payload: {e}")))?;
        let request_id = job.id().as_str().replacen("job_", "", 1);
        let owner = match self.owner(job).await? {
            Ok(owner) => owner,
            Err(refused) => return answer(&request_id, refused.into_response()).await,
        };
        let endpoint = match item.url.as_str() {
            "/v1/chat/completions" => Endpoint::Chat,
            "/v1/completions" => Endpoint::Completion,
            other => return Err(JobError::poison(format!("batch endpoint '{other}' is not served here"))),
        };
        let mut body = item.body;
        if let Some(obj) = body.as_object_mut() {
            // A batch line answers one JSON body; a stream has nowhere to go.
            obj.remove("stream");
            obj.remove("stream_options");
        }
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| JobError::poison(e.to_string()))?);
        let cx = self.context(&request_id, endpoint, owner, &item.url);
        let st = self.st.current();
        // A line refused before any backend (invalid body, budget, rate) is recorded as the
        // access layer records a live request's: one usage row per line, whatever happens.
        let mut unsettled = Unsettled::new(st.clone(), cx.clone(), endpoint);
        let call = async move {
            let res = match endpoint {
                Endpoint::Completion => completions::handle(State(st), Extension(cx), Ok(body)).await,
                _ => chat::handle(State(st), Extension(cx), Ok(body)).await,
            };
            let res = res.unwrap_or_else(IntoResponse::into_response);
            unsettled.finish(res.status().as_u16(), res.extensions().get::<ErrorLog>());
            res
        };
        let res = tokio::select! {
            r = call => r,
            _ = cancel.cancelled() => return Err(JobError::retryable("cancelled before the answer")),
        };
        answer(&request_id, res).await
    }

    /// The batch's key and tenant as the auth layer would see them; `Err(ApiError)` when the key
    /// can no longer be used (the line's answer is that error).
    pub(super) async fn owner(&self, job: &LeasedJob) -> Result<Result<Arc<KeyLookup>, ApiError>, JobError> {
        let tenancy = self.st.tenancy.as_ref().ok_or_else(|| JobError::poison("batch line without tenancy"))?;
        let (Some(key_id), Some(tenant_id)) = (&job.key_id, &job.tenant_id) else {
            return Err(JobError::poison("batch line without an owning key"));
        };
        let store = &tenancy.store;
        let key = store.get_key(key_id).await.map_err(|e| JobError::retryable(e.to_string()))?;
        let tenant = store.get_tenant(tenant_id).await.map_err(|e| JobError::retryable(e.to_string()))?;
        let (Some(key), Some(tenant)) = (key, tenant) else {
            return Ok(Err(ApiError::unauthorized("The API key that created this batch no longer exists")));
        };
        if key.status(tenancy.now_ms()) != KeyStatus::Active {
            return Ok(Err(ApiError::unauthorized("The API key that created this batch is revoked or expired")));
        }
        Ok(Ok(Arc::new(KeyLookup { key, tenant })))
    }

    /// A request context as the edge layers build it: the owner as caller with a ledger slot,
    /// batch priority, marked as queued work (a background-only tier serves it).
    pub(super) fn context(&self, request_id: &str, endpoint: Endpoint, owner: Arc<KeyLookup>, path: &str) -> RequestCx {
        let st = &self.st;
        let mut headers = HeaderMap::new();
        headers.insert(PRIORITY_HEADER, HeaderValue::from_static("batch"));
        let started = Instant::now();
        let obs = Arc::new(st.obs.request(&headers, "POST", path, started, true));
        let now_ms = st.tenancy.as_ref().map_or(0, |t| t.now_ms());
        let meter = Some(RequestMeter::new(endpoint.ledger_name(), now_ms));
        let caller = Arc::new(Caller { principal: Principal::Key(owner), meter });
        obs.authenticated(&caller);
        RequestCx {
            id: request_id.into(),
            started,
            endpoint: Some(endpoint),
            client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            caller: Some(caller),
            limits: None,
            hints: RouteHints::from_headers(&headers),
            background: true,
            cache_control: Default::default(),
            obs,
        }
    }
}

/// The line's result from the endpoint's response.
async fn answer(request_id: &str, res: Response) -> Result<Value, JobError> {
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| JobError::retryable(format!("reading the answer: {e}")))?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    let code = status.as_u16();
    let response = ItemResponse { status_code: code, request_id: request_id.to_owned(), body };
    let value = serde_json::to_value(&response).map_err(|e| JobError::poison(e.to_string()))?;
    let message = || {
        let m = response.body.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
        format!("HTTP {code}: {m}")
    };
    match code {
        200..=299 => Ok(value),
        408 | 409 | 429 => Err(JobError::retryable(message())),
        400..=499 => Err(JobError::failed(message(), value)),
        _ => Err(JobError::retryable(message())),
    }
}

#[async_trait]
impl Runner for EdgeRunner {
    async fn run(&self, job: &LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        match job.kind {
            JobKind::BatchItem => self.batch_item(job, cancel).await,
            JobKind::Webhook => self.deliverer.deliver(job).await,
            JobKind::Response => self.response(job, cancel).await,
        }
    }
}
