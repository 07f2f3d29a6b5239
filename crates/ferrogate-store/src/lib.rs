//! SQLite and PostgreSQL implementations of core's tenancy store traits ([`TenantStore`],
//! [`KeyStore`], [`UsageStore`]); core's [`LedgerWriter`] writes the usage rows through them.
//!
//! One [`Store`] over sqlx's `Any` driver serves both engines, chosen by the database URL
//! (`sqlite://PATH`, `postgres://…`): one set of SQL text, `$N` placeholders (SQLite reads
//! `$N` as the N-th argument too), one set of migrations applied by [`Store::connect`].
//!
//! Invariants: key plaintexts never reach the database (only digests); every usage row is keyed by
//! its server-made row id (never the client's request id) and inserted `ON CONFLICT (id) DO
//! NOTHING`; SQL errors leave this crate as
//! [`StoreError`] (no sqlx type in the public API beyond the connect error's source).
//!
//! [`redis_limits`] holds the Redis implementation of core's `LimitStore` (shared rate-limit counters),
//! [`redis_budgets`] that of core's `SharedBudgets` (day/month budgets and in-flight caps), and
//! [`redis_breakers`] shares circuit-breaker opens between replicas (pub/sub).
//!
//! [`Store`] also implements core's `ConversationStore` (conversations, items, stored responses;
//! migration 3, see docs/STATE.md): every query is scoped by the owner's tenant, and a turn is
//! appended in one transaction guarded by the conversation's version. [`redis_cache`] holds the
//! Redis implementation of core's `ResponseCache`.
//!
//! Background work (migration 4): [`SqlQueue`] (`store.job_queue()`) implements core's `JobQueue`,
//! [`WebhookRegistry`] (`store.webhooks(SealingKey)`) its `WebhookStore` with secrets sealed at
//! rest, and [`Store`] itself `FileStore` and `BatchStore` (see docs/JOBS.md).
//!
//! [`TenantStore`]: ferrogate_core::tenancy::TenantStore
//! [`KeyStore`]: ferrogate_core::tenancy::KeyStore
//! [`UsageStore`]: ferrogate_core::tenancy::UsageStore
//! [`StoreError`]: ferrogate_core::tenancy::StoreError

#![warn(missing_docs)]

mod batches;
mod conv_rows;
mod conv_writes;
mod conversations;
mod db;
mod error;
mod files;
mod jobs;
mod keys;
mod migrations;
pub mod redis_breakers;
pub mod redis_budgets;
pub mod redis_cache;
pub mod redis_limits;
mod sealing;
pub mod semantic_pg;
mod tenants;
mod usage;
mod webhooks;

pub use db::{ConnectError, DbKind, Store, StoreOptions};
/// The usage ledger's writer lives in core (ledger semantics); re-exported for the callers that
/// open a store and start its writer together.
pub use ferrogate_core::tenancy::ledger::{LedgerConfig, LedgerSender, LedgerStats, LedgerWriter, OpenStore};
pub use jobs::SqlQueue;
pub use sealing::{SealingKey, SealingKeyError};
pub use webhooks::WebhookRegistry;
