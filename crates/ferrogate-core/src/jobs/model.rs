//! The plain types of the durable queue: what is enqueued, what a worker leases, how a run ends,
//! and what the admin side reads back (records, attempt history, stats, DLQ filters).
//!
//! Invariants: a job's `state` is one of [`JobState`]; only `running` jobs hold a lease, and a
//! lease is identified by its random token, so a worker whose lease expired and was taken over
//! can no longer complete, fail or extend the job.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::JobId;
use crate::tenancy::{InvalidInput, KeyId, TenantId};

/// What a job does; closed, so metric labels and worker pools are a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A background response (`responses.create(background=True)`).
    Response,
    /// One line of a batch.
    BatchItem,
    /// One webhook message to one endpoint.
    Webhook,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 3] = [JobKind::Response, JobKind::BatchItem, JobKind::Webhook];

    /// As stored and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Response => "response",
            JobKind::BatchItem => "batch_item",
            JobKind::Webhook => "webhook",
        }
    }
}

impl FromStr for JobKind {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown job kind '{s}' (response, batch_item, webhook)")))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is in its life.
///
/// `queued` → `running` → `succeeded` | `failed` | `cancelled` | `dead`, and `running` → `queued`
/// again on a retryable failure (with backoff), an expired lease, or a release at drain.
/// `dead` → `queued` by a DLQ replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (possibly not before its `run_after`).
    Queued,
    /// Leased by a worker.
    Running,
    /// Ran to a result.
    Succeeded,
    /// Ran to an answer that is an error (e.g. a batch line the upstream refused with 400): the
    /// job's own result, recorded, not a fault of the queue — it does not go to the DLQ.
    Failed,
    /// Cancelled before or during its run.
    Cancelled,
    /// In the dead-letter queue: every attempt failed, or the failure was not retryable (poison).
    Dead,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Dead,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Dead => "dead",
        }
    }

    /// Whether the job will not run again by itself.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl FromStr for JobState {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| InvalidInput(format!("unknown job state '{s}'")))
    }
}

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

/// A job as stored, for polling and the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// Identity.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Whose work it is.
    pub tenant_id: Option<TenantId>,
    /// The key that asked for it.
    pub key_id: Option<KeyId>,
    /// The batch it belongs to.
    pub batch_id: Option<String>,
    /// Its priority (lower first).
    pub priority: i32,
    /// Runs so far (reset by a replay).
    pub attempts: u32,
    /// Its attempt limit.
    pub max_attempts: u32,
    /// The work.
    pub payload: Value,
    /// The answer of a `succeeded` or `failed` job.
    pub result: Option<Value>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// A cancel was asked for while it ran.
    pub cancel_requested: bool,
    /// Unix ms before which it is not leased.
    pub run_after_ms: i64,
    /// Unix ms when the current lease ends (running jobs).
    pub lease_until_ms: Option<i64>,
    /// Its dedupe key.
    pub dedupe_key: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last change.
    pub updated_at_ms: i64,
    /// Unix ms when it reached a terminal state.
    pub finished_at_ms: Option<i64>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running (or its worker died and the lease has not been noticed yet).
    Running,
    /// Ran to a result.
    Succeeded,
    /// Ran to an error answer.
    Failed,
    /// Failed and was retried or dead-lettered.
    Error,
    /// Its worker stopped heartbeating; the lease ran out.
    LeaseExpired,
    /// Handed back at drain; not counted.
    Released,
    /// Stopped by a cancel.
    Cancelled,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Running,
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::Error,
        AttemptOutcome::LeaseExpired,
        AttemptOutcome::Released,
        AttemptOutcome::Cancelled,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Error => "error",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown attempt outcome '{s}'")))
    }
}

/// One run of a job, for the DLQ's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// 1-based run number (restarts at 1 after a replay).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker_id: String,
    /// Unix ms.
    pub started_at_ms: i64,
    /// Unix ms; `None` while running.
    pub finished_at_ms: Option<i64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The failure's message.
    pub error: Option<String>,
}

/// A job with its attempt history (DLQ detail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job.
    pub job: JobRecord,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Which DLQ entries a list, bulk replay or purge means; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this batch's items.
    pub batch_id: Option<String>,
    /// Only this tenant's jobs.
    pub tenant_id: Option<TenantId>,
}

/// A page of a list ordered by id (creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries after this id (the previous page's last: a job id, a message id); `None` = from
    /// the start.
    pub after: Option<String>,
    /// At most this many (capped at [`Page::MAX_LIMIT`]).
    pub limit: u32,
}

impl Page {
    /// The largest page served.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first `limit` entries.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The limit, capped.
    pub fn capped_limit(&self) -> u32 {
        self.limit.min(Self::MAX_LIMIT)
    }
}

/// Queue gauges of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    /// Queued and runnable now.
    pub ready: u64,
    /// Queued with a `run_after` in the future (backing off).
    pub delayed: u64,
    /// Leased.
    pub running: u64,
    /// In the DLQ.
    pub dead: u64,
    /// How long the oldest runnable job has been waiting past its `run_after`, ms (0 when none).
    pub oldest_ready_age_ms: u64,
}

/// Queue gauges per kind (metrics: depth, age of the oldest item, DLQ size).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// One entry per kind, in [`JobKind::ALL`] order.
    pub kinds: Vec<(JobKind, KindStats)>,
}

impl QueueStats {
    /// DLQ size over every kind.
    pub fn dead(&self) -> u64 {
        self.kinds.iter().map(|(_, s)| s.dead).sum()
    }

    /// A kind's gauges.
    pub fn kind(&self, kind: JobKind) -> KindStats {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>().ok(), Some(k));
        }
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        }
        for o in AttemptOutcome::ALL {
            assert_eq!(o.as_str().parse::<AttemptOutcome>().ok(), Some(o));
        }
        assert!("email".parse::<JobKind>().is_err());
        assert!(!JobState::Running.is_terminal() && JobState::Dead.is_terminal());
    }

    #[test]
    fn new_jobs_are_validated() {
        let mut j = NewJob::new(JobKind::Webhook, Value::Null);
        assert!(j.validate().is_ok());
        j.max_attempts = 0;
        assert!(j.validate().is_err());
        j.max_attempts = 1;
        j.dedupe_key = Some(String::new());
        assert!(j.validate().is_err());
        assert_eq!(Page::first(5000).capped_limit(), Page::MAX_LIMIT);
    }
}
