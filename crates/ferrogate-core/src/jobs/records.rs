//! What the admin side reads back: job records, attempt history, DLQ filters, pages, stats.

use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::ids::JobId;
use super::kinds::{JobKind, JobState};
use crate::tenancy::{InvalidInput, KeyId, TenantId};

/// A job as stored, for polling and the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// Identity.
    pub id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Whose work it is.
    pub tenant_id: Option<TenantId>,
    /// The key that asked for it.
    pub key_id: Option<KeyId>,
    /// The batch it belongs to.
    pub batch_id: Option<String>,
    /// Its priority (lower first).
    pub priority: i32,
    /// Runs so far (reset by a replay).
    pub attempts: u32,
    /// Its attempt limit.
    pub max_attempts: u32,
    /// The work.
    pub payload: Value,
    /// The answer of a `succeeded` or `failed` job.
    pub result: Option<Value>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// A cancel was asked for while it ran.
    pub cancel_requested: bool,
    /// Unix ms before which it is not leased.
    pub run_after_ms: i64,
    /// Unix ms when the current lease ends (running jobs).
    pub lease_until_ms: Option<i64>,
    /// Its dedupe key.
    pub dedupe_key: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last change.
    pub updated_at_ms: i64,
    /// Unix ms when it reached a terminal state.
    pub finished_at_ms: Option<i64>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Still running (or its worker died and the lease has not been noticed yet).
    Running,
    /// Ran to a result.
    Succeeded,
    /// Ran to an error answer.
    Failed,
    /// Failed and was retried or dead-lettered.
    Error,
    /// Its worker stopped heartbeating; the lease ran out.
    LeaseExpired,
    /// Handed back at drain; not counted.
    Released,
    /// Stopped by a cancel.
    Cancelled,
}

impl AttemptOutcome {
    /// Every outcome.
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Running,
        AttemptOutcome::Succeeded,
        AttemptOutcome::Failed,
        AttemptOutcome::Error,
        AttemptOutcome::LeaseExpired,
        AttemptOutcome::Released,
        AttemptOutcome::Cancelled,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Error => "error",
            AttemptOutcome::LeaseExpired => "lease_expired",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl FromStr for AttemptOutcome {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown attempt outcome '{s}'")))
    }
}

/// One run of a job, for the DLQ's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// 1-based run number (restarts at 1 after a replay).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker_id: String,
    /// Unix ms.
    pub started_at_ms: i64,
    /// Unix ms; `None` while running.
    pub finished_at_ms: Option<i64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The failure's message.
    pub error: Option<String>,
}

/// A job with its attempt history (DLQ detail).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job.
    pub job: JobRecord,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// Which DLQ entries a list, bulk replay or purge means; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadFilter {
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this batch's items.
    pub batch_id: Option<String>,
    /// Only this tenant's jobs.
    pub tenant_id: Option<TenantId>,
}

/// A page of a list ordered by id (creation order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries after this id (the previous page's last: a job id, a message id); `None` = from
    /// the start.
    pub after: Option<String>,
    /// At most this many (capped at [`Page::MAX_LIMIT`]).
    pub limit: u32,
}

impl Page {
    /// The largest page served.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first `limit` entries.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The limit, capped.
    pub fn capped_limit(&self) -> u32 {
        self.limit.min(Self::MAX_LIMIT)
    }
}

/// Queue gauges of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindStats {
    /// Queued and runnable now.
    pub ready: u64,
    /// Queued with a `run_after` in the future (backing off).
    pub delayed: u64,
    /// Leased.
    pub running: u64,
    /// In the DLQ.
    pub dead: u64,
    /// How long the oldest runnable job has been waiting past its `run_after`, ms (0 when none).
    pub oldest_ready_age_ms: u64,
}

/// Queue gauges per kind (metrics: depth, age of the oldest item, DLQ size).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// One entry per kind, in [`JobKind::ALL`] order.
    pub kinds: Vec<(JobKind, KindStats)>,
}

impl QueueStats {
    /// DLQ size over every kind.
    pub fn dead(&self) -> u64 {
        self.kinds.iter().map(|(_, s)| s.dead).sum()
    }

    /// A kind's gauges.
    pub fn kind(&self, kind: JobKind) -> KindStats {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| s.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_pages_are_capped() {
        for o in AttemptOutcome::ALL {
            assert_eq!(o.as_str().parse::<AttemptOutcome>().ok(), Some(o));
        }
        assert_eq!(Page::first(5000).capped_limit(), Page::MAX_LIMIT);
    }
}
