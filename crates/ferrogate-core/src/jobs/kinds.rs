//! The closed sets of the queue: what a job does ([`JobKind`]) and where it is in its life
//! ([`JobState`]), with their stored names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::tenancy::InvalidInput;

/// What a job does; closed, so metric labels and worker pools are a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A background response (`responses.create(background=True)`).
    Response,
    /// One line of a batch.
    BatchItem,
    /// One webhook message to one endpoint.
    Webhook,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 3] = [JobKind::Response, JobKind::BatchItem, JobKind::Webhook];

    /// As stored and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Response => "response",
            JobKind::BatchItem => "batch_item",
            JobKind::Webhook => "webhook",
        }
    }
}

impl FromStr for JobKind {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown job kind '{s}' (response, batch_item, webhook)")))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is in its life.
///
/// `queued` → `running` → `succeeded` | `failed` | `cancelled` | `dead`, and `running` → `queued`
/// again on a retryable failure (with backoff), an expired lease, or a release at drain.
/// `dead` → `queued` by a DLQ replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (possibly not before its `run_after`).
    Queued,
    /// Leased by a worker.
    Running,
    /// Ran to a result.
    Succeeded,
    /// Ran to an answer that is an error (e.g. a batch line the upstream refused with 400): the
    /// job's own result, recorded, not a fault of the queue — it does not go to the DLQ.
    Failed,
    /// Cancelled before or during its run.
    Cancelled,
    /// In the dead-letter queue: every attempt failed, or the failure was not retryable (poison).
    Dead,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Dead,
    ];

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Dead => "dead",
        }
    }

    /// Whether the job will not run again by itself.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl FromStr for JobState {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| InvalidInput(format!("unknown job state '{s}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>().ok(), Some(k));
        }
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().ok(), Some(s));
        }
        assert!("email".parse::<JobKind>().is_err());
        assert!(!JobState::Running.is_terminal() && JobState::Dead.is_terminal());
    }
}
