//! Background work on core's [`JobQueue`]: the worker pool that leases jobs and runs them through
//! a [`Runner`] the server implements, webhook delivery (Standard Webhooks signatures, SSRF
//! guard) as `webhook` jobs, and the batch driver (each input line a `batch_item` job, finished
//! into OpenAI's output and error files).
//!
//! Invariant: no HTTP framework or engine types here (design.md); the queue and the stores are
//! core's traits, implemented for SQLite/PostgreSQL by `ferrogate-store`.
//!
//! # What the edge calls
//!
//! Composition (the binary): `let queue = Arc::new(store.job_queue())` (a
//! `ferrogate_store::SqlQueue`), `let hooks = Arc::new(store.webhooks(SealingKey::from_base64(key)?))`,
//! files and batches are the `Store` itself (`FileStore`, `BatchStore`).
//!
//! - Workers: [`WorkerPool::start`]`(queue, runner, capacity, PoolConfig::new(instance, kinds))`;
//!   the server's [`Runner`] dispatches on `job.kind`: `response` → run the stored request,
//!   `batch_item` → run [`batch::BatchItemJob`] and answer [`batch::ItemResponse`] (`Ok` for 2xx,
//!   [`JobError::failed`] for a 4xx answer, [`JobError::retryable`] for 5xx/timeouts), `webhook` →
//!   [`webhook::Deliverer::deliver`]. [`Capacity`] from the admission state. On SIGTERM:
//!   [`WorkerPool::drain`]`(deadline)`. After a local enqueue: [`WorkerPool::notify`].
//! - Background responses: `queue.enqueue(NewJob { kind: Response, … })` and answer
//!   [`background::response_id`] of the job id; poll with `queue.get(job_id_of(id))`
//!   ([`background::response_status`] of its state; the answer is in `result`); cancel with
//!   `queue.cancel` (mid-generation too: the runner's token fires at its next heartbeat; publish
//!   `response.cancelled` yourself when it was still queued). Start the pool with
//!   [`WorkerPool::start_with_hooks`] and [`background::ResponseEvents`] for `response.*` events.
//! - Batches: `FileStore::create_file` / `get_file` / `file_content` / `list_files` /
//!   `delete_file`; `BatchStore::create_batch` then [`batch::BatchDriver::start`]; `get_batch` /
//!   `list_batches`; [`batch::BatchDriver::cancel`]; a ticker calling
//!   [`batch::BatchDriver::tick`] every few seconds on every instance.
//! - DLQ (`/admin/v1/dlq`, CLI): `JobQueue::list_dead` / `get_dead` / `replay` / `replay_dead` /
//!   `delete_dead` / `purge_dead`; metrics from `JobQueue::stats`.
//! - Webhooks (`/admin/v1/webhooks`): `WebhookStore::create_endpoint` (answer includes the secret,
//!   once) / `list_endpoints` / `get_endpoint` / `delete_endpoint` / `list_deliveries`; events
//!   through [`webhook::Publisher::publish`] when a response or batch ends.
//!
//! [`JobQueue`]: ferrogate_core::jobs::JobQueue

#![warn(missing_docs)]

mod config;
mod pool;
mod run;
mod runner;

pub use config::{KindWorkers, PoolConfig};
pub use pool::{Drained, WorkerPool};
pub use runner::{AlwaysSpare, Capacity, JobError, NoHooks, OnFinished, Runner};
pub mod background;
pub mod batch;
pub mod webhook;

/// A serialization failure as the store error callers already handle.
pub(crate) fn tenancy_error(e: serde_json::Error) -> ferrogate_core::tenancy::StoreError {
    ferrogate_core::tenancy::StoreError::Database(Box::new(e))
}
