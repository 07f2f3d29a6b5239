//! The conversation writes that must be atomic: creating (with the per-tenant cap), appending a
//! turn (with the version check), adding items, and storing a response.
//!
//! Every write transaction starts with a write (an UPDATE or INSERT), so SQLite takes its write
//! lock up front — waiting out other writers — instead of failing to upgrade a read snapshot; on
//! PostgreSQL the first UPDATE takes the row lock that orders concurrent turns.

use ferrogate_core::conversations::{
    ConvResult, Conversation, ConversationError, ConversationId, Item, NewConversation, Owner, StoredResponse, Turn,
};
use ferrogate_core::tenancy::time::now_ms;
use sqlx::{Any, Transaction};

use crate::Store;
use crate::conv_rows::{CONV_COLS, VISIBLE, cerr, conversation_from_row, status_text};
use crate::tenants::to_json;

type Tx = Transaction<'static, Any>;

impl Store {
    pub(crate) async fn create_conversation_tx(&self, new: NewConversation) -> ConvResult<Conversation> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        lock_tenant(&mut tx, new.owner.tenant.as_str()).await?;
        if let Some(cap) = new.cap {
            let held = count_visible(&mut *tx, new.owner.tenant.as_str(), now).await?;
            if held >= cap {
                return Err(ConversationError::CapReached { limit: cap }); // dropping `tx` rolls back
            }
        }
        let conv = Conversation {
            id: ConversationId::generate(),
            owner: new.owner,
            metadata: new.metadata,
            version: 0,
            created_at_ms: now,
            expires_at_ms: new.expires_at_ms,
        };
        sqlx::query(
            "INSERT INTO conversations (id, tenant_id, key_id, metadata, version, next_seq, created_at_ms, \
             updated_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, 0, $5, $6, $6, $7)",
        )
        .bind(conv.id.as_str())
        .bind(conv.owner.tenant.as_str())
        .bind(conv.owner.key.as_ref().map(|k| k.as_str().to_owned()))
        .bind(to_json(&conv.metadata)?)
        .bind(len_i64(&new.items))
        .bind(now)
        .bind(conv.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(cerr)?;
        insert_items(&mut tx, &conv.id, 0, &new.items, now).await?;
        tx.commit().await.map_err(cerr)?;
        Ok(conv)
    }

    pub(crate) async fn append_turn_tx(&self, owner: &Owner, turn: Turn) -> ConvResult<Conversation> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        let n = len_i64(&turn.input) + len_i64(&turn.output);
        let check = Bump { id: &turn.conversation, owner, n, expected: Some(turn.expected_version), now };
        let (conv, first_seq) = bump(&mut tx, check, turn.expires_at_ms).await?;
        insert_items(&mut tx, &conv.id, first_seq, &turn.input, now).await?;
        insert_items(&mut tx, &conv.id, first_seq + len_i64(&turn.input), &turn.output, now).await?;
        if let Some(response) = &turn.response {
            insert_response(&mut tx, response, &turn.input).await?;
        }
        tx.commit().await.map_err(cerr)?;
        Ok(conv)
    }

    pub(crate) async fn add_items_tx(
        &self,
        owner: &Owner,
        id: &ConversationId,
        items: Vec<Item>,
        expires_at_ms: Option<i64>,
    ) -> ConvResult<Conversation> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        let check = Bump { id, owner, n: len_i64(&items), expected: None, now };
        let (conv, first_seq) = bump(&mut tx, check, expires_at_ms).await?;
        insert_items(&mut tx, id, first_seq, &items, now).await?;
        tx.commit().await.map_err(cerr)?;
        Ok(conv)
    }

    pub(crate) async fn store_response_tx(&self, response: StoredResponse, input: Vec<Item>) -> ConvResult<()> {
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        insert_response(&mut tx, &response, &input).await?;
        tx.commit().await.map_err(cerr)
    }
}

fn len_i64<T>(v: &[T]) -> i64 {
    i64::try_from(v.len()).unwrap_or(i64::MAX)
}

/// Takes the tenant's creation lock (see the migration's `conversation_tenants`).
async fn lock_tenant(tx: &mut Tx, tenant: &str) -> ConvResult<()> {
    sqlx::query(
        "INSERT INTO conversation_tenants (tenant_id, creates) VALUES ($1, 0) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tenant)
    .execute(&mut **tx)
    .await
    .map_err(cerr)?;
    sqlx::query("UPDATE conversation_tenants SET creates = creates + 1 WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut **tx)
        .await
        .map_err(cerr)?;
    Ok(())
}

pub(crate) async fn count_visible<'c, E>(exec: E, tenant: &str, now: i64) -> ConvResult<u64>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversations WHERE tenant_id = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
    )
    .bind(tenant)
    .bind(now)
    .fetch_one(exec)
    .await
    .map_err(cerr)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A version bump: `n` positions claimed, checked against `expected` when given.
struct Bump<'a> {
    id: &'a ConversationId,
    owner: &'a Owner,
    n: i64,
    expected: Option<i64>,
    now: i64,
}

/// Bumps the version and claims `n` positions; returns the conversation at its new version and
/// the first claimed position. `NotFound` if the owner cannot see it, `Conflict` if its version
/// is not `expected`.
async fn bump(tx: &mut Tx, b: Bump<'_>, expires_at_ms: Option<i64>) -> ConvResult<(Conversation, i64)> {
    let sql = format!(
        "UPDATE conversations SET version = version + 1, next_seq = next_seq + $4, updated_at_ms = $3, \
         expires_at_ms = $5 WHERE id = $1 AND {VISIBLE} AND ($6 < 0 OR version = $6) \
         RETURNING {CONV_COLS}, next_seq"
    );
    let row = sqlx::query(&sql)
        .bind(b.id.as_str())
        .bind(b.owner.tenant.as_str())
        .bind(b.now)
        .bind(b.n)
        .bind(expires_at_ms)
        .bind(b.expected.unwrap_or(-1))
        .fetch_optional(&mut **tx)
        .await
        .map_err(cerr)?;
    if let Some(row) = row {
        let conv = conversation_from_row(&row)?;
        let next: i64 = sqlx::Row::try_get(&row, "next_seq").map_err(cerr)?;
        return Ok((conv, next - b.n));
    }
    let sql = format!("SELECT version FROM conversations WHERE id = $1 AND {VISIBLE}");
    let found: Option<i64> = sqlx::query_scalar(&sql)
        .bind(b.id.as_str())
        .bind(b.owner.tenant.as_str())
        .bind(b.now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(cerr)?;
    match (found, b.expected) {
        (Some(found), Some(expected)) => Err(ConversationError::Conflict { id: b.id.to_string(), expected, found }),
        _ => Err(ConversationError::not_found("conversation", b.id)),
    }
}

async fn insert_items(tx: &mut Tx, conv: &ConversationId, first_seq: i64, items: &[Item], now: i64) -> ConvResult<()> {
    for (i, item) in items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO conversation_items (id, conversation_id, seq, role, body, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(item.id.as_str())
        .bind(conv.as_str())
        .bind(first_seq + len_i64(&items[..i]))
        .bind(item.role_label())
        .bind(to_json(item)?)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(cerr)?;
    }
    Ok(())
}

async fn insert_response(tx: &mut Tx, r: &StoredResponse, input: &[Item]) -> ConvResult<()> {
    sqlx::query(
        "INSERT INTO stored_responses (id, tenant_id, key_id, conversation_id, previous_response_id, status, body, \
         input_items, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.id.as_str())
    .bind(r.owner.tenant.as_str())
    .bind(r.owner.key.as_ref().map(|k| k.as_str().to_owned()))
    .bind(r.conversation.as_ref().map(|c| c.as_str().to_owned()))
    .bind(r.previous.as_ref().map(|p| p.as_str().to_owned()))
    .bind(status_text(r)?)
    .bind(to_json(&r.body)?)
    .bind(to_json(&input)?)
    .bind(r.created_at_ms)
    .bind(r.expires_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(cerr)?;
    Ok(())
}
