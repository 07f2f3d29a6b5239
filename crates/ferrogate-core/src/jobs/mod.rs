//! Asynchronous work: the durable job queue's types and trait, the retry policy, and webhook
//! endpoints. `ferrogate-store` implements [`JobQueue`] and [`WebhookStore`] for SQLite and
//! PostgreSQL; `ferrogate-jobs` runs the workers and delivers webhooks.
//!
//! Layers, bottom up: [`ids`] → [`model`] → [`retry`] → [`queue`], [`webhook`].

#![warn(missing_docs)]

pub mod ids;
pub mod model;
pub mod queue;
pub mod retry;
pub mod webhook;

pub use ids::{EndpointId, JobId, MessageId};
pub use model::{
    AttemptOutcome, AttemptRecord, CancelOutcome, DeadFilter, FailOutcome, JobDetail, JobFailure, JobKind, JobRecord,
    JobState, KindStats, Lease, LeaseStatus, LeasedJob, NewJob, Outcome, Page, QueueStats,
};
pub use queue::{JobQueue, LeaseRequest};
pub use retry::{FixedJitter, Jitter, RandomJitter, RetryPolicies, RetryPolicy, WEBHOOK_SCHEDULE};
pub use webhook::{
    AttemptReport, CreatedEndpoint, Delivery, DeliveryStatus, EventType, NewEndpoint, WebhookEndpoint, WebhookSecret,
    WebhookStore,
};
