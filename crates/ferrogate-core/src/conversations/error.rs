//! What a conversation-store call can fail with, and how the edge should answer each.

use crate::tenancy::StoreError;

/// A conversation or response operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// No such conversation, item or response for this owner (another tenant's ids included,
    /// and expired ones): 404.
    #[error("{what} '{id}' not found")]
    NotFound {
        /// `"conversation"`, `"item"` or `"response"`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The conversation changed since the turn read it (another turn was appended first): 409.
    /// Retrying means reading the conversation again and regenerating the answer.
    #[error("conversation '{id}' changed while this turn ran (version {expected} expected, {found} found)")]
    Conflict {
        /// The conversation.
        id: String,
        /// The version the turn read.
        expected: i64,
        /// The version it has now.
        found: i64,
    },
    /// The tenant holds as many conversations as allowed: 429 `conversation_limit_reached`
    /// (deleting one, or retention, frees room; waiting alone does not).
    #[error("this tenant already holds {limit} conversations, the most allowed")]
    CapReached {
        /// The tenant's cap.
        limit: u64,
    },
    /// The database failed: 503 when retryable, else 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConversationError {
    /// A `NotFound` for `what` with this id.
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound { what, id: id.to_string() }
    }

    /// Whether the same call may succeed later unchanged.
    pub fn retryable(&self) -> bool {
        match self {
            ConversationError::Store(e) => e.retryable(),
            ConversationError::NotFound { .. }
            | ConversationError::Conflict { .. }
            | ConversationError::CapReached { .. } => false,
        }
    }
}
