//! Asynchronous work: the durable job queue's types and trait, the retry policy, webhook
//! endpoints, and Files + Batches records with the input-file validation. `ferrogate-store`
//! implements [`JobQueue`], [`WebhookStore`], [`FileStore`] and [`BatchStore`] for SQLite and
//! PostgreSQL; `ferrogate-jobs` runs the workers and delivers webhooks.
//!
//! Layers, bottom up: [`ids`], [`kinds`] → [`model`], [`records`] → [`retry`] → [`queue`], [`webhook`], [`files`],
//! [`batch`] → [`batch_input`] (the pure validation of a batch's input file).

#![warn(missing_docs)]

pub mod batch;
pub mod batch_input;
pub mod files;
pub mod ids;
pub mod kinds;
pub mod model;
pub mod queue;
pub mod records;
pub mod retry;
pub mod webhook;

pub use batch::{
    Batch, BatchChanges, BatchEndpoint, BatchError, BatchStatus, BatchStore, NewBatch, RequestCounts, StatusTimes,
};
pub use batch_input::{BatchLine, InputLimits, validate_input};
pub use files::{FileLimits, FileObject, FilePurpose, FileStore, NewFile};
pub use ids::{BatchId, EndpointId, FileId, JobId, MessageId};
pub use kinds::{JobKind, JobState};
pub use model::{CancelOutcome, FailOutcome, JobFailure, Lease, LeaseStatus, LeasedJob, NewJob, Outcome};
pub use queue::{JobQueue, LeaseRequest};
pub use records::{AttemptOutcome, AttemptRecord, DeadFilter, JobDetail, JobRecord, KindStats, Page, QueueStats};
pub use retry::{FixedJitter, Jitter, RandomJitter, RetryPolicies, RetryPolicy, WEBHOOK_SCHEDULE};
pub use webhook::{
    AttemptReport, CreatedEndpoint, Delivery, DeliveryStatus, EventType, NewEndpoint, WebhookEndpoint, WebhookSecret,
    WebhookStore,
};
