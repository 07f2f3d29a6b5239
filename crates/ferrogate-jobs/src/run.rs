//! Running one leased job: the runner's future raced against a heartbeat ticker and the pool's
//! hard stop, then the outcome written back to the queue.
//!
//! Invariant: exactly one of complete / fail / release is attempted per lease, and none after a
//! heartbeat reported the lease lost (another worker owns the job then).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrogate_core::jobs::{JobFailure, JobQueue, LeaseStatus, LeasedJob, Outcome};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::runner::{JobError, Runner};

/// What one job run needs from its pool.
pub(crate) struct RunCx {
    pub queue: Arc<dyn JobQueue>,
    pub runner: Arc<dyn Runner>,
    pub visibility_timeout: Duration,
    pub heartbeat_every: Duration,
    /// Fired when a drain's deadline passes: stop and hand the job back.
    pub hard_stop: CancellationToken,
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
    let lease = &job.lease;
    let written = match ended {
        Ended::Lost => {
            tracing::warn!(job = %job.id(), kind = job.kind.as_str(), "job lease lost; another worker has it");
            return;
        }
        Ended::Stopped => cx.queue.release(lease).await.map(|_| ()),
        Ended::Ran(Ok(value)) => cx.queue.complete(lease, Outcome::Succeeded(value)).await.map(|_| ()),
        Ended::Ran(Err(_)) if cancel_requested => cx.queue.complete(lease, Outcome::Cancelled).await.map(|_| ()),
        Ended::Ran(Err(JobError { answer: Some(answer), .. })) => {
            cx.queue.complete(lease, Outcome::Failed(answer)).await.map(|_| ())
        }
        Ended::Ran(Err(e)) => {
            let failure = JobFailure { error: e.message, retryable: e.retryable };
            cx.queue.fail(lease, failure).await.map(|outcome| {
                tracing::info!(job = %job.id(), kind = job.kind.as_str(), ?outcome, "job attempt failed");
            })
        }
    };
    if let Err(e) = written {
        // The lease runs out and the job runs again: at-least-once.
        tracing::error!(job = %job.id(), error = %e, "could not record the job's outcome");
    }
}
