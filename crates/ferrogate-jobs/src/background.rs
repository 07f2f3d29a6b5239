//! Background responses (`responses.create(background=True)`) as `response` jobs: the response id
//! is the job's (`resp_<uuid>` ↔ `job_<uuid>`), its status is the job's state, and its end is
//! announced to webhook subscribers (`response.completed|failed|cancelled`) by [`ResponseEvents`].

use std::sync::Arc;

use async_trait::async_trait;
use ferrogate_core::jobs::{EventType, JobId, JobKind, JobState, LeasedJob};
use ferrogate_core::tenancy::time::now_ms;
use serde_json::json;

use crate::runner::OnFinished;
use crate::webhook::{Publisher, WebhookEvent};

/// The response id shown to the client for a `response` job.
pub fn response_id(job: &JobId) -> String {
    format!("resp_{}", job.as_str().trim_start_matches("job_"))
}

/// The job behind a response id; `None` for an id this gateway did not make.
pub fn job_id_of(response_id: &str) -> Option<JobId> {
    let hex = response_id.strip_prefix("resp_")?;
    let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| JobId::from(format!("job_{hex}")))
}

/// The response's `status` for the job's state (a dead job's response failed).
pub fn response_status(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "in_progress",
        JobState::Succeeded => "completed",
        JobState::Failed | JobState::Dead => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// Publishes `response.*` events as background responses end (a pool hook).
#[derive(Debug)]
pub struct ResponseEvents(pub Arc<Publisher>);

#[async_trait]
impl OnFinished for ResponseEvents {
    async fn finished(&self, job: &LeasedJob, state: JobState) {
        if job.kind != JobKind::Response {
            return;
        }
        let event_type = match state {
            JobState::Succeeded => EventType::ResponseCompleted,
            JobState::Failed | JobState::Dead => EventType::ResponseFailed,
            JobState::Cancelled => EventType::ResponseCancelled,
            JobState::Queued | JobState::Running => return,
        };
        let id = response_id(job.id());
        let event = WebhookEvent {
            id: format!("evt_{id}_{}", response_status(state)),
            event_type,
            tenant_id: job.tenant_id.clone(),
            data: json!({ "id": id }),
            created_at: now_ms() / 1000,
        };
        if let Err(e) = self.0.publish(&event).await {
            tracing::error!(response = %id, error = %e, "could not publish the response's webhook event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_ids_map_to_job_ids_and_back() {
        let job = JobId::generate();
        let resp = response_id(&job);
        assert!(resp.starts_with("resp_") && resp.len() == 37, "{resp}");
        assert_eq!(job_id_of(&resp), Some(job));
        for foreign in ["resp_xyz", "job_0123", "resp_../../etc", ""] {
            assert_eq!(job_id_of(foreign), None, "{foreign}");
        }
        assert_eq!(response_status(JobState::Running), "in_progress");
        assert_eq!(response_status(JobState::Dead), "failed");
    }
}
