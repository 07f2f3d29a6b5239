//! Batches (OpenAI's `/v1/batches`): the record, its status machine, and the [`BatchStore`]
//! trait. The lines themselves run as `batch_item` jobs on the queue; the batch record holds the
//! status, the live counts and the output/error files.
//!
//! Invariant: status changes go through [`BatchStatus::can_move_to`] and the store applies them
//! only from the expected current status, so two instances never both finalize one batch.

use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::ids::{BatchId, FileId};
use super::records::Page;
use crate::tenancy::{InvalidInput, KeyId, StoreError, TenantId};

/// The endpoint every line of a batch calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchEndpoint {
    /// `/v1/chat/completions`
    ChatCompletions,
    /// `/v1/completions`
    Completions,
    /// `/v1/responses`
    Responses,
}

impl BatchEndpoint {
    /// Every endpoint.
    pub const ALL: [BatchEndpoint; 3] =
        [BatchEndpoint::ChatCompletions, BatchEndpoint::Completions, BatchEndpoint::Responses];

    /// The path, as in the request and in each input line's `url`.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchEndpoint::ChatCompletions => "/v1/chat/completions",
            BatchEndpoint::Completions => "/v1/completions",
            BatchEndpoint::Responses => "/v1/responses",
        }
    }
}

impl FromStr for BatchEndpoint {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            InvalidInput(format!(
                "unsupported batch endpoint '{s}' (/v1/chat/completions, /v1/completions, /v1/responses)"
            ))
        })
    }
}

impl Serialize for BatchEndpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// OpenAI's batch statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// The input file is being checked.
    Validating,
    /// The input file was refused (see `errors`).
    Failed,
    /// Lines are running.
    InProgress,
    /// Every line ended; the output and error files are being written.
    Finalizing,
    /// Done; files written.
    Completed,
    /// The completion window passed first; finished lines are in the files.
    Expired,
    /// A cancel was asked for; running lines are stopping.
    Cancelling,
    /// Cancelled; finished lines are in the files.
    Cancelled,
}

impl BatchStatus {
    /// Every status.
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Validating,
        BatchStatus::Failed,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelling,
        BatchStatus::Cancelled,
    ];

    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens to the batch.
    pub fn is_terminal(self) -> bool {
        matches!(self, BatchStatus::Failed | BatchStatus::Completed | BatchStatus::Expired | BatchStatus::Cancelled)
    }

    /// The allowed transitions.
    pub fn can_move_to(self, next: BatchStatus) -> bool {
        use BatchStatus as S;
        matches!(
            (self, next),
            (S::Validating, S::Failed | S::InProgress | S::Cancelling)
                | (S::InProgress, S::Finalizing | S::Cancelling | S::Expired)
                | (S::Finalizing, S::Completed | S::Expired)
                | (S::Cancelling, S::Cancelled)
        )
    }
}

impl FromStr for BatchStatus {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown batch status '{s}'")))
    }
}

/// One entry of a batch's `errors.data` (OpenAI's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BatchError {
    /// Machine-readable (`invalid_json_line`, `duplicate_custom_id`, …).
    pub code: String,
    /// For people.
    pub message: String,
    /// The field at fault.
    pub param: Option<String>,
    /// The 1-based input line, when one is at fault.
    pub line: Option<u64>,
}

impl BatchError {
    /// An error about input line `line`.
    pub fn at(line: u64, code: &str, param: Option<&str>, message: String) -> Self {
        Self { code: code.into(), message, param: param.map(Into::into), line: Some(line) }
    }

    /// An error about the whole file.
    pub fn file(code: &str, message: String) -> Self {
        Self { code: code.into(), message, param: None, line: None }
    }
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// Lines in the input file.
    pub total: u64,
    /// Lines that got a response.
    pub completed: u64,
    /// Lines that ended in an error.
    pub failed: u64,
}

/// When the batch entered each status (unix ms), OpenAI's `*_at` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StatusTimes {
    /// `in_progress_at`
    pub in_progress_at_ms: Option<i64>,
    /// `finalizing_at`
    pub finalizing_at_ms: Option<i64>,
    /// `completed_at`
    pub completed_at_ms: Option<i64>,
    /// `failed_at`
    pub failed_at_ms: Option<i64>,
    /// `expired_at`
    pub expired_at_ms: Option<i64>,
    /// `cancelling_at`
    pub cancelling_at_ms: Option<i64>,
    /// `cancelled_at`
    pub cancelled_at_ms: Option<i64>,
}

impl StatusTimes {
    /// Records entering `status` at `now_ms`.
    pub fn enter(&mut self, status: BatchStatus, now_ms: i64) {
        let slot = match status {
            BatchStatus::Validating => return,
            BatchStatus::InProgress => &mut self.in_progress_at_ms,
            BatchStatus::Finalizing => &mut self.finalizing_at_ms,
            BatchStatus::Completed => &mut self.completed_at_ms,
            BatchStatus::Failed => &mut self.failed_at_ms,
            BatchStatus::Expired => &mut self.expired_at_ms,
            BatchStatus::Cancelling => &mut self.cancelling_at_ms,
            BatchStatus::Cancelled => &mut self.cancelled_at_ms,
        };
        *slot = Some(now_ms);
    }
}

/// A batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    /// `batch_…`.
    pub id: BatchId,
    /// The owner: its limits and budgets apply to every line.
    pub tenant_id: TenantId,
    /// The key that created it (metering).
    pub key_id: Option<KeyId>,
    /// What each line calls.
    pub endpoint: BatchEndpoint,
    /// The input file.
    pub input_file_id: FileId,
    /// `24h`.
    pub completion_window: String,
    /// Where it is.
    pub status: BatchStatus,
    /// Successful lines, once finalized.
    pub output_file_id: Option<FileId>,
    /// Failed lines, once finalized.
    pub error_file_id: Option<FileId>,
    /// Why validation failed.
    pub errors: Vec<BatchError>,
    /// Live counts.
    pub request_counts: RequestCounts,
    /// The caller's metadata.
    pub metadata: Option<Value>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms when the completion window ends.
    pub expires_at_ms: i64,
    /// When it entered each status.
    pub times: StatusTimes,
}

/// What `POST /v1/batches` asks for (validated by the edge: endpoint parsed, window `24h`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    /// The owner.
    pub tenant_id: TenantId,
    /// The creating key.
    pub key_id: Option<KeyId>,
    /// What each line calls.
    pub endpoint: BatchEndpoint,
    /// The tenant's input file (purpose `batch`).
    pub input_file_id: FileId,
    /// The completion window, in ms (24 h).
    pub completion_window_ms: i64,
    /// The caller's metadata.
    pub metadata: Option<Value>,
}

/// What a status change also sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchChanges {
    /// Replaces the counts.
    pub request_counts: Option<RequestCounts>,
    /// Replaces the errors.
    pub errors: Option<Vec<BatchError>>,
    /// Sets the output file.
    pub output_file_id: Option<FileId>,
    /// Sets the error file.
    pub error_file_id: Option<FileId>,
}

/// Batch records.
#[async_trait::async_trait]
pub trait BatchStore: Send + Sync {
    /// Stores a new batch in `validating`.
    async fn create_batch(&self, new: NewBatch) -> Result<Batch, StoreError>;
    /// The batch; with a tenant, only that tenant's (another tenant gets `None`: 404).
    async fn get_batch(&self, tenant: Option<&TenantId>, id: &BatchId) -> Result<Option<Batch>, StoreError>;
    /// The tenant's batches, newest first (OpenAI's order), after the cursor id.
    async fn list_batches(&self, tenant: &TenantId, page: &Page) -> Result<Vec<Batch>, StoreError>;
    /// Batches in `status`, oldest first (the driver: finalize, expire).
    async fn batches_in(&self, status: BatchStatus, limit: u32) -> Result<Vec<Batch>, StoreError>;
    /// Moves the batch from `from` to `to` (refused with [`StoreError::Invalid`] unless
    /// [`BatchStatus::can_move_to`]) and applies `changes`; `None` if it was not in `from` (another
    /// instance moved it first).
    async fn transition(
        &self,
        id: &BatchId,
        from: BatchStatus,
        to: BatchStatus,
        changes: BatchChanges,
    ) -> Result<Option<Batch>, StoreError>;
    /// Replaces the live counts.
    async fn set_counts(&self, id: &BatchId, counts: RequestCounts) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_machine() {
        use BatchStatus as S;
        assert!(S::Validating.can_move_to(S::InProgress) && S::Validating.can_move_to(S::Failed));
        assert!(S::InProgress.can_move_to(S::Finalizing) && S::Finalizing.can_move_to(S::Completed));
        assert!(S::InProgress.can_move_to(S::Cancelling) && S::Cancelling.can_move_to(S::Cancelled));
        assert!(S::InProgress.can_move_to(S::Expired));
        for terminal in [S::Failed, S::Completed, S::Expired, S::Cancelled] {
            assert!(terminal.is_terminal());
            assert!(S::ALL.iter().all(|n| !terminal.can_move_to(*n)), "{terminal:?} is final");
        }
        assert!(!S::Completed.can_move_to(S::InProgress) && !S::Validating.can_move_to(S::Completed));
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().ok(), Some(s));
        }
        let mut t = StatusTimes::default();
        t.enter(S::Completed, 7);
        assert_eq!(t.completed_at_ms, Some(7));
        assert_eq!("/v1/responses".parse::<BatchEndpoint>().ok(), Some(BatchEndpoint::Responses));
        assert!("/v1/embeddings".parse::<BatchEndpoint>().is_err());
    }
}
