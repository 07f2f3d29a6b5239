//! What is enqueued, what a worker leases, and how a run ends.
//!
//! Invariants: only `running` jobs hold a lease, and a lease is identified by its random token,
//! so a worker whose lease expired and was taken over can no longer complete, fail or extend the
//! job.

use serde_json::Value;

use super::ids::JobId;
use super::kinds::{JobKind, JobState};
use crate::tenancy::{InvalidInput, KeyId, TenantId};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What it does.
    pub kind: JobKind,
    /// Whose work it is (metering, limits, DLQ filters); `None` for system work.
    pub tenant_id: Option<TenantId>,
    /// The key that asked for it.
    pub key_id: Option<KeyId>,
    /// The work, as the runner of `kind` reads it. Visible in the admin DLQ API: no secrets.
    pub payload: Value,
    /// Lower runs first (background responses before batch lines, say).
    pub priority: i32,
    /// Runs at most this many times (≥ 1); then it goes to the DLQ.
    pub max_attempts: u32,
    /// Unix ms before which it is not leased; `None` = now.
    pub run_after_ms: Option<i64>,
    /// The batch it belongs to (DLQ filter, batch progress).
    pub batch_id: Option<String>,
    /// Enqueueing a second job with the same key returns the first one's id and stores nothing:
    /// re-submitting after a crash is harmless (e.g. `"{batch_id}:{line}"`).
    pub dedupe_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `payload`, priority 0, 5 attempts, runnable now.
    pub fn new(kind: JobKind, payload: Value) -> Self {
        Self {
            kind,
            tenant_id: None,
            key_id: None,
            payload,
            priority: 0,
            max_attempts: 5,
            run_after_ms: None,
            batch_id: None,
            dedupe_key: None,
        }
    }

    /// Refuses values the queue cannot honour.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.max_attempts == 0 {
            return Err(InvalidInput("max_attempts must be at least 1".into()));
        }
        if self.dedupe_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 512) {
            return Err(InvalidInput("dedupe_key must be 1 to 512 bytes".into()));
        }
        Ok(())
    }
}

/// Proof of a lease: the job and the random token of the lease call that took it. Completing,
/// failing, extending or releasing a job needs the current token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: JobId,
    /// The lease's token (never shown to clients).
    pub token: String,
    /// Which run this is, 1-based; counted when leased, so a run cut short by a dead worker counts.
    pub attempt: u32,
    /// The job's attempt limit, to decide retry or DLQ without a read.
    pub max_attempts: u32,
}

/// A job a worker holds until `lease_until_ms` (extended by heartbeats).
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    /// The lease.
    pub lease: Lease,
    /// What it does.
    pub kind: JobKind,
    /// The work.
    pub payload: Value,
    /// Whose work it is.
    pub tenant_id: Option<TenantId>,
    /// The key that asked for it.
    pub key_id: Option<KeyId>,
    /// The batch it belongs to.
    pub batch_id: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// Unix ms when it was enqueued (queue latency = lease time − this).
    pub created_at_ms: i64,
    /// Unix ms when the lease ends unless extended.
    pub lease_until_ms: i64,
}

impl LeasedJob {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.lease.job_id
    }
}

/// How a run that produced an answer ends ([`super::JobQueue::complete`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// → `succeeded`, with the result.
    Succeeded(Value),
    /// → `failed`: the answer is an error (kept as the result), not a fault to retry.
    Failed(Value),
    /// → `cancelled`: the run stopped because a cancel was asked for.
    Cancelled,
}

/// Why a run failed ([`super::JobQueue::fail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// What went wrong, for the attempt history and the DLQ (no secrets).
    pub error: String,
    /// Worth another attempt; `false` = poison: straight to the DLQ.
    pub retryable: bool,
}

/// What [`super::JobQueue::fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to `queued`, not leased before this unix ms.
    Retrying {
        /// Unix ms.
        run_after_ms: i64,
    },
    /// Moved to the DLQ.
    Dead,
    /// A cancel was asked for meanwhile: `cancelled`.
    Cancelled,
    /// The lease was no longer held (expired and taken over, or the job was deleted): nothing changed.
    LeaseLost,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Extended.
    Held,
    /// Extended, but a cancel was asked for: stop, then complete with [`Outcome::Cancelled`].
    CancelRequested,
    /// Not held any more: stop and write nothing.
    Lost,
}

/// What [`super::JobQueue::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued: now `cancelled`.
    Cancelled,
    /// It is running: flagged; the worker sees it at its next heartbeat.
    Requested,
    /// Already in this terminal state: nothing changed.
    AlreadyFinished(JobState),
    /// No such job.
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_jobs_are_validated() {
        let mut j = NewJob::new(JobKind::Webhook, Value::Null);
        assert!(j.validate().is_ok());
        j.max_attempts = 0;
        assert!(j.validate().is_err());
        j.max_attempts = 1;
        j.dedupe_key = Some(String::new());
        assert!(j.validate().is_err());
    }
}
