//! Tenants, API keys and the usage ledger: the domain types, key generation and hashing, and the
//! store traits that `ferrogate-store` implements for SQLite and PostgreSQL.
//!
//! Invariants:
//! - A key's plaintext exists only in [`PlaintextKey`], returned once by creation and rotation;
//!   it never prints (`Debug` shows the visible prefix only) and is never stored — stores keep the
//!   [`KeyDigest`] (SHA-256 of the whole key), compared in constant time.
//! - Every time is unix milliseconds, UTC ([`time`]); usage windows are half-open `[from, to)`.
//! - Admission ([`quota`]) is pure: callers pass the time and hold the counters' locks.
//! - No database types here: stores report [`StoreError`], whose source is boxed.

#![warn(missing_docs)]

pub mod ids;
pub mod key;
pub mod ledger;
pub mod model;
pub mod quota;
pub mod shared;
pub mod spool;
pub mod store;
pub mod time;
pub mod usage;

pub use ids::{KeyId, TenantId};
pub use key::{
    GeneratedKey, KeyDigest, KeyGenError, MalformedKey, ParsedKey, PlaintextKey, generate_key,
    generate_key_with_prefix, parse_key,
};
pub use model::{
    ApiKey, EndpointGroup, InvalidInput, KeyLookup, KeyStatus, KeyUpdate, Limits, NewKey, NewKeySpec, NewTenant,
    Scopes, Tenant, TenantUpdate,
};
pub use store::{BoxError, KeyStore, StoreError, TenancyStore, TenantStore, UsageStore};
pub use usage::{BudgetUsage, GroupBy, UsageQuery, UsageRecord, UsageRow, UsageSubject, UsageTotals};
