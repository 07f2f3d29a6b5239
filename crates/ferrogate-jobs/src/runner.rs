//! What the worker pool runs and when it may: the [`Runner`] the server implements (one per
//! gateway, dispatching on the job's kind), its [`JobError`], and the [`Capacity`] hook through
//! which background work yields to interactive traffic.

use async_trait::async_trait;
use ferrogate_core::jobs::{JobState, LeasedJob};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Runs leased jobs. The pool calls it once per lease, concurrently up to each kind's limit.
#[async_trait]
pub trait Runner: Send + Sync + 'static {
    /// Does the job's work. `cancel` fires when a cancel was asked for, the lease was lost, or
    /// the pool is draining past its deadline: stop soon (the future may also just be dropped).
    /// Effects must be idempotent: delivery is at-least-once.
    async fn run(&self, job: &LeasedJob, cancel: CancellationToken) -> Result<Value, JobError>;
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// What went wrong (attempt history, DLQ; no secrets).
    pub message: String,
    /// Worth another attempt (after backoff); `false` = poison, straight to the DLQ.
    pub retryable: bool,
    /// The run produced an answer that is an error (a batch line refused with 400): the job
    /// ends `failed` with this as its result, neither retried nor dead-lettered.
    pub answer: Option<Value>,
}

impl JobError {
    /// A transient failure (upstream 5xx, timeout): retried with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, answer: None }
    }

    /// A failure that will repeat (malformed payload): straight to the DLQ.
    pub fn poison(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, answer: None }
    }

    /// The job's answer is an error: recorded as its result, state `failed`.
    pub fn failed(message: impl Into<String>, answer: Value) -> Self {
        Self { message: message.into(), retryable: false, answer: Some(answer) }
    }
}

/// Whether background work may start now. The server answers from its admission state
/// (interactive queue empty, engine slots free); workers wait while it says no, and running
/// jobs are not interrupted.
pub trait Capacity: Send + Sync + 'static {
    /// Spare capacity for one more background job.
    fn has_spare(&self) -> bool;
}

/// Always spare (a gateway with no interactive pressure signal, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysSpare;

impl Capacity for AlwaysSpare {
    fn has_spare(&self) -> bool {
        true
    }
}

impl<F: Fn() -> bool + Send + Sync + 'static> Capacity for F {
    fn has_spare(&self) -> bool {
        self()
    }
}

/// Told when a job this pool ran reached a final state: `succeeded`, `failed`, `cancelled` or
/// `dead` (webhook events, metrics). Not told of jobs that never ran here (cancelled while
/// queued, reaped after a dead worker's last lease).
#[async_trait]
pub trait OnFinished: Send + Sync + 'static {
    /// `job` ended in `state`.
    async fn finished(&self, job: &LeasedJob, state: JobState);
}

/// Tells no one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

#[async_trait]
impl OnFinished for NoHooks {
    async fn finished(&self, _job: &LeasedJob, _state: JobState) {}
}
