//! Reading conversations, items and stored responses back from rows, and the SQL fragments
//! every conversation query shares (owner scoping, expiry).

use ferrogate_core::conversations::model::Conversation;
use ferrogate_core::conversations::{ConversationError, ConversationId, Item, Owner, ResponseId, StoredResponse};
use ferrogate_core::tenancy::{KeyId, StoreError, TenantId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{corrupt, db_err};
use crate::tenants::{from_json, to_json};

pub(crate) const CONV_COLS: &str = "id, tenant_id, key_id, metadata, version, created_at_ms, expires_at_ms";

pub(crate) const RESPONSE_COLS: &str =
    "id, tenant_id, key_id, conversation_id, previous_response_id, body, created_at_ms, expires_at_ms";

/// `AND` clause: the row is this owner's (`$2`) and not expired at `$3`.
pub(crate) const VISIBLE: &str = "tenant_id = $2 AND (expires_at_ms IS NULL OR expires_at_ms > $3)";

fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(col).map_err(|e| corrupt(col, e))
}

fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(col).map_err(|e| corrupt(col, e))
}

fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(col).map_err(|e| corrupt(col, e))
}

fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(col).map_err(|e| corrupt(col, e))
}

fn owner(row: &AnyRow) -> Result<Owner, StoreError> {
    Ok(Owner::new(TenantId::from(text(row, "tenant_id")?), opt_text(row, "key_id")?.map(KeyId::from)))
}

pub(crate) fn conversation_from_row(row: &AnyRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: ConversationId::from_stored(text(row, "id")?),
        owner: owner(row)?,
        metadata: from_json("conversation metadata", &text(row, "metadata")?)?,
        version: int(row, "version")?,
        created_at_ms: int(row, "created_at_ms")?,
        expires_at_ms: opt_int(row, "expires_at_ms")?,
    })
}

pub(crate) fn item_from_row(row: &AnyRow) -> Result<Item, StoreError> {
    from_json("conversation item", &text(row, "body")?)
}

pub(crate) fn response_from_row(row: &AnyRow) -> Result<StoredResponse, StoreError> {
    Ok(StoredResponse {
        id: ResponseId::from_stored(text(row, "id")?),
        owner: owner(row)?,
        conversation: opt_text(row, "conversation_id")?.map(ConversationId::from_stored),
        previous: opt_text(row, "previous_response_id")?.map(ResponseId::from_stored),
        created_at_ms: int(row, "created_at_ms")?,
        expires_at_ms: opt_int(row, "expires_at_ms")?,
        body: from_json("stored response", &text(row, "body")?)?,
    })
}

/// A response's status as stored in its own column (`completed`, `failed`, …).
pub(crate) fn status_text(r: &StoredResponse) -> Result<String, StoreError> {
    Ok(to_json(&r.body.status)?.trim_matches('"').to_owned())
}

/// A database error as a conversation error.
pub(crate) fn cerr(e: sqlx::Error) -> ConversationError {
    ConversationError::Store(db_err(e))
}
