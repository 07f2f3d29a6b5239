//! Publishing an event: one `webhook` job and one pending delivery per subscribed endpoint.
//!
//! Idempotent: message ids derive from (event id, endpoint) and are the jobs' dedupe keys, so
//! publishing an event again after a crash adds nothing. The job is enqueued before its delivery
//! record is written: a crash in between leaves a job whose attempts update no record (the job
//! and its history are still in the queue), never a record with no job.

use std::sync::Arc;

use ferrogate_core::jobs::{Delivery, DeliveryStatus, JobKind, JobQueue, MessageId, NewJob, WebhookStore};
use ferrogate_core::tenancy::StoreError;
use ferrogate_core::tenancy::time::now_ms;

use super::payload::{WebhookEvent, WebhookJob};
use crate::tenancy_error;

/// Attempts per message: the first and the seven retries of the Standard Webhooks schedule
/// (5 s … 10 h, more than 27 h in all).
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 8;

/// Publishes events to their subscribers through the durable queue.
pub struct Publisher {
    store: Arc<dyn WebhookStore>,
    queue: Arc<dyn JobQueue>,
    /// The webhook jobs' priority (lower runs first).
    priority: i32,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("priority", &self.priority).finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher enqueueing at `priority`.
    pub fn new(store: Arc<dyn WebhookStore>, queue: Arc<dyn JobQueue>, priority: i32) -> Self {
        Self { store, queue, priority }
    }

    /// Enqueues one message per endpoint subscribed to the event; their ids.
    pub async fn publish(&self, event: &WebhookEvent) -> Result<Vec<MessageId>, StoreError> {
        let endpoints = self.store.subscribers(event.event_type, event.tenant_id.as_ref()).await?;
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let body = event.body();
        let messages: Vec<WebhookJob> = endpoints
            .iter()
            .map(|e| WebhookJob {
                message_id: event.message_id(&e.id),
                endpoint_id: e.id.clone(),
                event_type: event.event_type,
                body: body.clone(),
            })
            .collect();
        let jobs = messages
            .iter()
            .map(|m| {
                Ok(NewJob {
                    tenant_id: event.tenant_id.clone(),
                    priority: self.priority,
                    max_attempts: WEBHOOK_MAX_ATTEMPTS,
                    dedupe_key: Some(m.message_id.to_string()),
                    ..NewJob::new(JobKind::Webhook, serde_json::to_value(m).map_err(tenancy_error)?)
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let job_ids = self.queue.enqueue_many(jobs).await?;
        let now = now_ms();
        let deliveries: Vec<Delivery> = messages
            .iter()
            .zip(job_ids)
            .map(|(m, job_id)| Delivery {
                id: m.message_id.clone(),
                endpoint_id: m.endpoint_id.clone(),
                event_type: m.event_type,
                job_id,
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_status_code: None,
                last_error: None,
                created_at_ms: now,
                updated_at_ms: now,
            })
            .collect();
        self.store.insert_deliveries(&deliveries).await?;
        Ok(messages.into_iter().map(|m| m.message_id).collect())
    }
}
