//! The usage ledger's row and the queries over it.
//!
//! Invariants: one [`UsageRecord`] per request, identified by its server-made `id` (UUIDv7, made
//! once when the row is built; a store keeps the first and ignores repeats of an `id`, so a
//! retried batch is idempotent). The client's `X-Request-Id` is only a label: a client that
//! repeats one still gets one row per request. Query windows are `[from, to)`
//! in unix ms; a query filtered by a tenant or key never sees another's rows.

use serde::{Deserialize, Serialize};

use super::ids::{KeyId, TenantId};
use super::time;

/// One request's usage, written once when the request settles (success, error or cancel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Made by the gateway ([`UsageRecord::new_id`]) when the row is built: the ledger's primary
    /// key. Never taken from the client, so a client cannot make two requests share a row.
    pub id: String,
    /// The request id echoed to the client in `X-Request-Id` (the client's own when it sent a
    /// usable one): for correlation only, not unique.
    pub request_id: String,
    /// `None` when the request was not authenticated (auth off, or rejected before it).
    pub tenant_id: Option<TenantId>,
    /// `None` when the request was not authenticated.
    pub key_id: Option<KeyId>,
    /// The API endpoint, from the server's closed set (`chat.completions`, `completions`, …).
    pub endpoint: String,
    /// The model name the client asked for (a deployment or alias).
    pub model_requested: String,
    /// The upstream's model name that served it; `None` if the request never reached a backend.
    pub model_served: Option<String>,
    /// The backend that served it; `None` if none did.
    pub backend: Option<String>,
    /// Prompt tokens (the provider's count when given, else the local estimate).
    pub prompt_tokens: u64,
    /// Prompt tokens served from a prefix/prompt cache (part of `prompt_tokens`).
    pub cached_prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Time from request start to settle.
    pub latency_ms: u64,
    /// Time to first token; `None` when no token came (errors, non-streamed without measurement).
    pub ttft_ms: Option<u64>,
    /// The HTTP status the client got (200 for a stream that failed after its first byte).
    pub http_status: u16,
    /// The OpenAI error type, also for a mid-stream error event; `None` on success.
    pub error_type: Option<String>,
    /// Whether the response was streamed.
    pub streamed: bool,
    /// Whether the client went away before the end.
    pub cancelled: bool,
    /// Served from the response cache (charged as configured: docs/STATE.md).
    pub cache_hit: bool,
    /// When the request started, unix ms: the time usage windows and buckets use.
    pub created_at_ms: i64,
}

impl UsageRecord {
    /// A fresh row id: a UUIDv7, time-ordered so the ledger's primary-key inserts stay local.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    /// Whether the row counts as an error in [`UsageTotals::errors`]: a 4xx/5xx status, or an
    /// error type (a stream that failed after HTTP 200 was committed).
    pub fn is_error(&self) -> bool {
        self.http_status >= 400 || self.error_type.is_some()
    }
}

/// How usage rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By tenant id (`""` for unauthenticated requests).
    Tenant,
    /// By key id (`""` for unauthenticated requests).
    Key,
    /// By the model the client requested.
    Model,
    /// By backend (`""` for requests that reached none).
    Backend,
    /// By UTC hour of `created_at_ms`, labelled `YYYY-MM-DDTHH:00Z`.
    Hour,
    /// By UTC day of `created_at_ms`, labelled `YYYY-MM-DD`.
    Day,
}

impl GroupBy {
    /// Every grouping.
    pub const ALL: [GroupBy; 6] =
        [GroupBy::Tenant, GroupBy::Key, GroupBy::Model, GroupBy::Backend, GroupBy::Hour, GroupBy::Day];

    /// The time bucket width for [`GroupBy::Hour`] and [`GroupBy::Day`].
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            GroupBy::Hour => Some(time::HOUR_MS),
            GroupBy::Day => Some(time::DAY_MS),
            GroupBy::Tenant | GroupBy::Key | GroupBy::Model | GroupBy::Backend => None,
        }
    }

    /// The label of a time bucket starting at `start_ms`.
    pub fn bucket_label(self, start_ms: i64) -> String {
        match self {
            GroupBy::Hour => time::format_hour(start_ms),
            _ => time::format_day(start_ms),
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = super::InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let g = match s {
            "tenant" => GroupBy::Tenant,
            "key" => GroupBy::Key,
            "model" => GroupBy::Model,
            "backend" => GroupBy::Backend,
            "hour" => GroupBy::Hour,
            "day" => GroupBy::Day,
            _ => {
                return Err(super::InvalidInput(format!(
                    "unknown group_by '{s}' (tenant, key, model, backend, hour, day)"
                )));
            }
        };
        Ok(g)
    }
}

/// A usage report: rows in `[from_ms, to_ms)`, optionally of one tenant and/or key, grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Inclusive start, unix ms.
    pub from_ms: i64,
    /// Exclusive end, unix ms.
    pub to_ms: i64,
    /// The grouping.
    pub group_by: GroupBy,
    /// Only this tenant's rows.
    pub tenant: Option<TenantId>,
    /// Only this key's rows.
    pub key: Option<KeyId>,
}

/// Sums over a set of usage rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageTotals {
    /// Rows (requests).
    pub requests: u64,
    /// Sum of prompt tokens.
    pub prompt_tokens: u64,
    /// Sum of cached prompt tokens.
    pub cached_tokens: u64,
    /// Sum of completion tokens.
    pub completion_tokens: u64,
    /// Rows that are errors ([`UsageRecord::is_error`]).
    pub errors: u64,
    /// Rows the client cancelled.
    pub cancelled: u64,
}

impl UsageTotals {
    /// Prompt plus completion tokens: what token budgets count.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// One group of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    /// The group's label: an id, a model or backend name, or a time bucket (see [`GroupBy`]).
    pub group: String,
    /// The group's sums.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// Whose usage a budget sum covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSubject {
    /// All keys of a tenant.
    Tenant(TenantId),
    /// One key.
    Key(KeyId),
}

/// Usage in the current budget windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BudgetUsage {
    /// Since the start of the current UTC day.
    pub day: UsageTotals,
    /// Since the start of the current UTC calendar month.
    pub month: UsageTotals,
}
