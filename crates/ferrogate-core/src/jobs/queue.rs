//! The durable queue trait, implemented by `ferrogate-store` for SQLite and PostgreSQL and run by
//! `ferrogate-jobs`' worker pool.
//!
//! Guarantees every implementation keeps (one behaviour suite checks them against each):
//! - While a lease holds, no other `lease` call returns the job: no job runs twice at once.
//! - A job whose lease expired (its worker died) is leased again, the lost run counted as an
//!   attempt; with no attempts left it goes to the DLQ instead.
//! - Only the holder of the current lease token can complete, fail, extend or release a job.
//! - Delivery is at-least-once: a worker that dies after doing the work but before `complete`
//!   leaves the job to run again, so runners make their effects idempotent (webhook ids, batch
//!   `custom_id`s, dedupe keys).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::ids::JobId;
use super::kinds::{JobKind, JobState};
use super::model::{CancelOutcome, FailOutcome, JobFailure, Lease, LeaseStatus, LeasedJob, NewJob, Outcome};
use super::records::{AttemptRecord, DeadFilter, JobDetail, JobRecord, Page, QueueStats};
use crate::tenancy::StoreError;

/// What a worker asks [`JobQueue::lease`] for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Who takes the jobs (host and task; recorded in the attempt history).
    pub worker_id: String,
    /// Only jobs of these kinds.
    pub kinds: Vec<JobKind>,
    /// At most this many jobs.
    pub max_jobs: u32,
    /// The lease's length; a job not extended by a heartbeat within it is leased again.
    pub visibility_timeout: Duration,
}

/// The durable job queue.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Stores a job; with a `dedupe_key` already stored, returns that job's id and stores nothing.
    async fn enqueue(&self, job: NewJob) -> Result<JobId, StoreError>;

    /// Stores several jobs in one transaction (all or none); ids in input order, deduplicated
    /// as [`JobQueue::enqueue`] does.
    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, StoreError>;

    /// Atomically takes up to `max_jobs` runnable jobs — queued with `run_after` passed, or
    /// running with an expired lease — lowest priority value first, then oldest `run_after`.
    /// Concurrent callers (threads, processes, replicas) never get the same job while its
    /// lease holds.
    async fn lease(&self, request: &LeaseRequest) -> Result<Vec<LeasedJob>, StoreError>;

    /// Extends the lease by `extend` from now; reports a cancel request or a lost lease.
    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<LeaseStatus, StoreError>;

    /// Ends the run with an answer. `false` if the lease was lost (nothing written).
    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<bool, StoreError>;

    /// Ends the run with a failure: queued again after the kind's backoff while attempts remain
    /// and the failure is retryable, else dead (DLQ); cancelled if a cancel was asked for.
    async fn fail(&self, lease: &Lease, failure: JobFailure) -> Result<FailOutcome, StoreError>;

    /// Hands a running job back without counting the attempt (graceful drain). `false` if the
    /// lease was lost.
    async fn release(&self, lease: &Lease) -> Result<bool, StoreError>;

    /// Cancels a queued job at once, or flags a running one for its worker to stop.
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError>;

    /// The job, if stored.
    async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError>;

    /// The job's attempts, oldest first.
    async fn history(&self, id: &JobId) -> Result<Vec<AttemptRecord>, StoreError>;

    /// Depth per kind, age of the oldest runnable job, DLQ size.
    async fn stats(&self) -> Result<QueueStats, StoreError>;

    /// How many of a batch's jobs are in each state (states with none are absent).
    async fn batch_counts(&self, batch_id: &str) -> Result<BTreeMap<JobState, u64>, StoreError>;

    /// A batch's jobs (any state), in id order, for writing its output and error files.
    async fn batch_jobs(&self, batch_id: &str, page: &Page) -> Result<Vec<JobRecord>, StoreError>;

    /// Cancels a batch's queued jobs and flags its running ones; how many were queued.
    async fn cancel_batch(&self, batch_id: &str) -> Result<u64, StoreError>;

    /// Dead jobs matching `filter`, in id (creation) order.
    async fn list_dead(&self, filter: &DeadFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError>;

    /// Dead jobs back to `queued` with their attempts reset; how many.
    async fn replay_dead(&self, filter: &DeadFilter) -> Result<u64, StoreError>;

    /// One dead job back to `queued` with its attempts reset; `false` if it is not dead.
    async fn replay(&self, id: &JobId) -> Result<bool, StoreError>;

    /// Deletes one dead job and its history; `false` if it is not dead.
    async fn delete_dead(&self, id: &JobId) -> Result<bool, StoreError>;

    /// Deletes the dead jobs matching `filter` and their history; how many.
    async fn purge_dead(&self, filter: &DeadFilter) -> Result<u64, StoreError>;

    /// Deletes succeeded, failed and cancelled jobs finished before `before_ms` (retention).
    async fn prune_finished(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// A dead job with its attempt history (DLQ detail); `None` unless it is dead.
    async fn get_dead(&self, id: &JobId) -> Result<Option<JobDetail>, StoreError> {
        let Some(job) = self.get(id).await?.filter(|j| j.state == JobState::Dead) else {
            return Ok(None);
        };
        Ok(Some(JobDetail { attempts: self.history(id).await?, job }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Arc<dyn JobQueue>` must stay possible: the binary hands the queue to the server as one.
    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn JobQueue>>) {}
        takes(None);
    }
}
