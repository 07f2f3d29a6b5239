//! Background work on core's [`JobQueue`]: the worker pool that leases jobs and runs them through
//! a [`Runner`] the server implements, and webhook delivery (Standard Webhooks signatures, SSRF
//! guard) as `webhook` jobs.
//!
//! Invariant: no HTTP framework or engine types here (design.md); the queue and the webhook
//! store are traits, implemented for SQLite/PostgreSQL by `ferrogate-store`.
//!
//! [`JobQueue`]: ferrogate_core::jobs::JobQueue

#![warn(missing_docs)]

mod config;
mod pool;
mod run;
mod runner;

pub use config::{KindWorkers, PoolConfig};
pub use pool::{Drained, WorkerPool};
pub use runner::{AlwaysSpare, Capacity, JobError, Runner};
pub mod batch;
pub mod webhook;

/// A serialization failure as the store error callers already handle.
pub(crate) fn tenancy_error(e: serde_json::Error) -> ferrogate_core::tenancy::StoreError {
    ferrogate_core::tenancy::StoreError::Database(Box::new(e))
}
