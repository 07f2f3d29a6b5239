//! Delivering one `webhook` job: read the endpoint and its secret, check the destination, sign,
//! POST, and record the attempt on the delivery.
//!
//! Any 2xx is delivered; anything else (3xx included: redirects are never followed), a timeout
//! or a connection error is retried on the queue's webhook schedule; a refused destination or a
//! malformed payload is poison (straight to the DLQ, visible and replayable); a deleted endpoint
//! ends the job `failed`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::jobs::{AttemptReport, DeliveryStatus, LeasedJob, MessageId, WebhookSecret, WebhookStore};
use ferrogate_core::tenancy::time::{Clock, SystemClock};
use reqwest::Url;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::guard::{GuardedResolver, RefusedDestination, check_url};
use super::payload::WebhookJob;
use super::sign::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign};
use crate::runner::{JobError, Runner};

/// Delivery settings (`[webhooks]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// Allow loopback, private and link-local destinations (off by default: SSRF).
    pub allow_private_destinations: bool,
    /// The whole request's deadline.
    pub timeout: Duration,
    /// Connecting's deadline.
    pub connect_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private_destinations: false,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Delivers `webhook` jobs; a [`Runner`] by itself, or called by the server's runner.
pub struct Deliverer {
    store: Arc<dyn WebhookStore>,
    client: reqwest::Client,
    allow_private: bool,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("allow_private", &self.allow_private).finish_non_exhaustive()
    }
}

/// How an attempt went, before it is recorded.
struct Attempt {
    report: AttemptReport,
    result: Result<Value, JobError>,
}

impl Deliverer {
    /// A deliverer with its own HTTP client: no redirects, no proxy, the guard as resolver.
    pub fn new(store: Arc<dyn WebhookStore>, config: &DeliveryConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .dns_resolver(Arc::new(GuardedResolver { allow_private: config.allow_private_destinations }))
            .user_agent(concat!("ferrogate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { store, client, allow_private: config.allow_private_destinations, clock: Arc::new(SystemClock) })
    }

    /// Signs with timestamps from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// One attempt of `job`; records it on the delivery.
    pub async fn deliver(&self, job: &LeasedJob) -> Result<Value, JobError> {
        let msg: WebhookJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::poison(format!("malformed webhook job: {e}")))?;
        let last = job.lease.attempt >= job.lease.max_attempts;
        let attempt = self.attempt(&msg, last).await;
        if let Err(e) = self.store.record_attempt(&msg.message_id, &attempt.report).await {
            tracing::warn!(message = %msg.message_id, error = %e, "could not record a webhook attempt");
        }
        attempt.result
    }

    async fn attempt(&self, msg: &WebhookJob, last: bool) -> Attempt {
        let endpoint = match self.store.endpoint_secret(&msg.endpoint_id).await {
            Ok(Some(found)) => found,
            Ok(None) => return gone(msg),
            Err(e) => return failure(format!("webhook store: {e}"), None, last),
        };
        let (endpoint, secret) = endpoint;
        let url = match check_url(&endpoint.url, self.allow_private) {
            Ok(url) => url,
            Err(refused) => return refused_attempt(refused),
        };
        match self.post(url, msg, &secret).await {
            Ok(status) if status.is_success() => Attempt {
                report: report(DeliveryStatus::Delivered, Some(status.as_u16()), None),
                result: Ok(json!({ "status": status.as_u16() })),
            },
            Ok(status) => failure(format!("receiver answered {status}"), Some(status.as_u16()), last),
            Err(e) => match refusal_in(&e) {
                Some(refused) => refused_attempt(refused),
                None => failure(format!("webhook request failed: {}", e.without_url()), None, last),
            },
        }
    }

    async fn post(&self, url: Url, msg: &WebhookJob, secret: &WebhookSecret) -> reqwest::Result<reqwest::StatusCode> {
        let timestamp = self.clock.now_ms() / 1000;
        let key = secret.key().unwrap_or_default();
        let signature = sign(&key, msg.message_id.as_str(), timestamp, msg.body.as_bytes());
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, msg.message_id.as_str())
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(msg.body.clone())
            .send()
            .await?;
        Ok(response.status())
    }
}

#[async_trait]
impl Runner for Deliverer {
    async fn run(&self, job: &LeasedJob, _cancel: CancellationToken) -> Result<Value, JobError> {
        self.deliver(job).await
    }
}

fn report(status: DeliveryStatus, code: Option<u16>, error: Option<String>) -> AttemptReport {
    AttemptReport { status, status_code: code, error }
}

/// A retryable failure; the delivery fails with the job's last attempt.
fn failure(error: String, code: Option<u16>, last: bool) -> Attempt {
    let status = if last { DeliveryStatus::Failed } else { DeliveryStatus::Pending };
    Attempt { report: report(status, code, Some(error.clone())), result: Err(JobError::retryable(error)) }
}

fn refused_attempt(error: String) -> Attempt {
    Attempt { report: report(DeliveryStatus::Failed, None, Some(error.clone())), result: Err(JobError::poison(error)) }
}

fn gone(msg: &WebhookJob) -> Attempt {
    let error = format!("webhook endpoint {} was deleted", msg.endpoint_id);
    Attempt {
        report: report(DeliveryStatus::Failed, None, Some(error.clone())),
        result: Err(JobError::failed(error, json!({ "error": "endpoint_deleted" }))),
    }
}

/// The guard's refusal, if that is what stopped the request.
fn refusal_in(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RefusedDestination>() {
            return Some(refused.to_string());
        }
        source = err.source();
    }
    None
}

/// The id a delivery is recorded under, for callers holding a job.
pub fn message_of(job: &LeasedJob) -> Option<MessageId> {
    serde_json::from_value::<WebhookJob>(job.payload.clone()).ok().map(|m| m.message_id)
}
