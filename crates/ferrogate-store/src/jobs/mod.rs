//! [`JobQueue`] for [`SqlQueue`]: the durable queue in SQLite or PostgreSQL (migration 4).
//!
//! Floors, bottom up: `queue` (the struct, row reading) → `lease`, `enqueue`, `finish`,
//! `admin` (the operations) → this file (the trait, delegating).

mod admin;
mod enqueue;
mod finish;
mod lease;
mod queue;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::jobs::{
    AttemptRecord, CancelOutcome, DeadFilter, FailOutcome, JobFailure, JobId, JobQueue, JobRecord, JobState, Lease,
    LeaseRequest, LeaseStatus, LeasedJob, NewJob, Outcome, Page, QueueStats,
};
use ferrogate_core::tenancy::StoreError;
pub use queue::SqlQueue;

#[async_trait]
impl JobQueue for SqlQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, StoreError> {
        let ids = self.insert_jobs(vec![job]).await?;
        ids.into_iter().next().ok_or_else(|| StoreError::Corrupt("enqueue returned no id".into()))
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>, StoreError> {
        self.insert_jobs(jobs).await
    }

    async fn lease(&self, request: &LeaseRequest) -> Result<Vec<LeasedJob>, StoreError> {
        self.pick(request).await
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<LeaseStatus, StoreError> {
        self.extend(lease, extend).await
    }

    async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<bool, StoreError> {
        self.finish(lease, outcome).await
    }

    async fn fail(&self, lease: &Lease, failure: JobFailure) -> Result<FailOutcome, StoreError> {
        self.record_failure(lease, failure).await
    }

    async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.hand_back(lease).await
    }

    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome, StoreError> {
        self.cancel_job(id).await
    }

    async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.get_job(id).await
    }

    async fn history(&self, id: &JobId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.attempts_of(id).await
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        self.queue_stats().await
    }

    async fn batch_counts(&self, batch_id: &str) -> Result<BTreeMap<JobState, u64>, StoreError> {
        self.counts_of_batch(batch_id).await
    }

    async fn batch_jobs(&self, batch_id: &str, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs_of_batch(batch_id, page).await
    }

    async fn cancel_batch(&self, batch_id: &str) -> Result<u64, StoreError> {
        self.cancel_jobs_of_batch(batch_id).await
    }

    async fn list_dead(&self, filter: &DeadFilter, page: &Page) -> Result<Vec<JobRecord>, StoreError> {
        self.dead_page(filter, page).await
    }

    async fn replay_dead(&self, filter: &DeadFilter) -> Result<u64, StoreError> {
        self.requeue_dead(None, filter).await
    }

    async fn replay(&self, id: &JobId) -> Result<bool, StoreError> {
        Ok(self.requeue_dead(Some(id), &DeadFilter::default()).await? == 1)
    }

    async fn delete_dead(&self, id: &JobId) -> Result<bool, StoreError> {
        Ok(self.delete_dead_jobs(Some(id), &DeadFilter::default()).await? == 1)
    }

    async fn purge_dead(&self, filter: &DeadFilter) -> Result<u64, StoreError> {
        self.delete_dead_jobs(None, filter).await
    }

    async fn prune_finished(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune(before_ms).await
    }
}
