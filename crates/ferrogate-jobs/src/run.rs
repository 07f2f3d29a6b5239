//! Running one leased job: the runner's future raced against a heartbeat ticker and the pool's
//! hard stop, then the outcome written back to the queue.
//!
//! Invariant: exactly one of complete / fail / release is attempted per lease, and none after a
//! heartbeat reported the lease lost (another worker owns the job then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrogate_core::jobs::{FailOutcome, JobFailure, JobQueue, JobState, LeaseStatus, LeasedJob, Outcome};
use ferrogate_core::tenancy::StoreError;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::runner::{JobError, OnFinished, Runner};

/// What one job run needs from its pool.
pub(crate) struct RunCx {
    pub queue: Arc<dyn JobQueue>,
    pub runner: Arc<dyn Runner>,
    pub visibility_timeout: Duration,
    pub heartbeat_every: Duration,
    /// Fired when a drain's deadline passes: stop and hand the job back.
    pub hard_stop: CancellationToken,
    /// Told of final states.
    pub finished: Arc<dyn OnFinished>,
}

/// How the race ended.
enum Ended {
    Ran(Result<Value, JobError>),
    Lost,
    Stopped,
}

/// Runs `job` to its end and records it. The runner and the heartbeat are polled side by side,
/// so a slow heartbeat call never pauses the work.
pub(crate) async fn run_job(cx: &RunCx, job: LeasedJob) {
    let cancel = CancellationToken::new();
    let cancel_requested = AtomicBool::new(false);
    let ended = {
        let work = cx.runner.run(&job, cancel.clone());
        let beats = heartbeat(cx, &job, &cancel, &cancel_requested);
        tokio::pin!(work, beats);
        tokio::select! {
            result = &mut work => Ended::Ran(result),
            () = &mut beats => Ended::Lost,
            () = cx.hard_stop.cancelled() => Ended::Stopped,
        }
    };
    cancel.cancel();
    record(cx, &job, ended, cancel_requested.load(Ordering::SeqCst)).await;
}

/// Extends the lease every `heartbeat_every`; fires `cancel` when a cancel was asked for, and
/// returns when the lease is lost.
async fn heartbeat(cx: &RunCx, job: &LeasedJob, cancel: &CancellationToken, requested: &AtomicBool) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + cx.heartbeat_every, cx.heartbeat_every);
    loop {
        ticker.tick().await;
        match cx.queue.heartbeat(&job.lease, cx.visibility_timeout).await {
            Ok(LeaseStatus::Held) => {}
            Ok(LeaseStatus::CancelRequested) => {
                requested.store(true, Ordering::SeqCst);
                cancel.cancel();
            }
            Ok(LeaseStatus::Lost) => return,
            // The lease may still hold; the next tick tries again.
            Err(e) => tracing::warn!(job = %job.id(), error = %e, "job heartbeat failed"),
        }
    }
}

async fn record(cx: &RunCx, job: &LeasedJob, ended: Ended, cancel_requested: bool) {
    match write(cx, job, ended, cancel_requested).await {
        Ok(Some(state)) => cx.finished.finished(job, state).await,
        Ok(None) => {}
        // The lease runs out and the job runs again: at-least-once.
        Err(e) => tracing::error!(job = %job.id(), error = %e, "could not record the job's outcome"),
    }
}

/// Writes the run's end; the job's final state if it has one now.
async fn write(
    cx: &RunCx,
    job: &LeasedJob,
    ended: Ended,
    cancel_requested: bool,
) -> Result<Option<JobState>, StoreError> {
    let lease = &job.lease;
    let (outcome, state) = match ended {
        Ended::Lost => {
            tracing::warn!(job = %job.id(), kind = job.kind.as_str(), "job lease lost; another worker has it");
            return Ok(None);
        }
        Ended::Stopped => return cx.queue.release(lease).await.map(|_| None),
        Ended::Ran(Ok(value)) => (Outcome::Succeeded(value), JobState::Succeeded),
        Ended::Ran(Err(_)) if cancel_requested => (Outcome::Cancelled, JobState::Cancelled),
        Ended::Ran(Err(JobError { answer: Some(answer), .. })) => (Outcome::Failed(answer), JobState::Failed),
        Ended::Ran(Err(e)) => {
            let failure = JobFailure { error: e.message, retryable: e.retryable };
            let outcome = cx.queue.fail(lease, failure).await?;
            tracing::info!(job = %job.id(), kind = job.kind.as_str(), ?outcome, "job attempt failed");
            return Ok(match outcome {
                FailOutcome::Dead => Some(JobState::Dead),
                FailOutcome::Cancelled => Some(JobState::Cancelled),
                FailOutcome::Retrying { .. } | FailOutcome::LeaseLost => None,
            });
        }
    };
    Ok(cx.queue.complete(lease, outcome).await?.then_some(state))
}
