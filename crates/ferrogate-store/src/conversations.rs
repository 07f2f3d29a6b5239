//! [`ConversationStore`] for [`Store`]: conversations, items and stored responses in SQLite or
//! PostgreSQL. The atomic writes live in `conv_writes`, row mapping in `conv_rows`.

use async_trait::async_trait;
use ferrogate_core::conversations::model::Conversation;
use ferrogate_core::conversations::{
    ConvResult, ConversationError, ConversationId, ConversationStore, Item, ItemId, ItemPage, ListQuery, Metadata,
    NewConversation, Order, Owner, Purged, ResponseId, StoredResponse, Turn,
};
use ferrogate_core::tenancy::TenantId;
use ferrogate_core::tenancy::time::now_ms;

use crate::Store;
use crate::conv_rows::{
    CONV_COLS, RESPONSE_COLS, VISIBLE, cerr, conversation_from_row, item_from_row, response_from_row,
};
use crate::conv_writes::count_visible;
use crate::tenants::{from_json, to_json};

fn conv_missing(id: &ConversationId) -> ConversationError {
    ConversationError::not_found("conversation", id)
}

impl Store {
    /// The item's position, if the (visible) conversation holds it.
    async fn item_seq(&self, id: &ConversationId, item: &ItemId) -> ConvResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM conversation_items WHERE conversation_id = $1 AND id = $2")
                .bind(id.as_str())
                .bind(item.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(cerr)?;
        seq.ok_or_else(|| ConversationError::not_found("item", item))
    }

    async fn items_page(&self, id: &ConversationId, after: Option<i64>, q: &ListQuery) -> ConvResult<ItemPage> {
        let limit = i64::from(q.limit());
        let (cmp, dir, from) = match q.order {
            Order::Asc => (">", "ASC", after.unwrap_or(-1)),
            Order::Desc => ("<", "DESC", after.unwrap_or(i64::MAX)),
        };
        let sql = format!(
            "SELECT body FROM conversation_items WHERE conversation_id = $1 AND seq {cmp} $2 ORDER BY seq {dir} LIMIT $3"
        );
        let rows =
            sqlx::query(&sql).bind(id.as_str()).bind(from).bind(limit + 1).fetch_all(&self.pool).await.map_err(cerr)?;
        let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > q.limit() as usize;
        items.truncate(q.limit() as usize);
        Ok(ItemPage { items, has_more })
    }
}

#[async_trait]
impl ConversationStore for Store {
    async fn create_conversation(&self, new: NewConversation) -> ConvResult<Conversation> {
        self.create_conversation_tx(new).await
    }

    async fn get_conversation(&self, owner: &Owner, id: &ConversationId) -> ConvResult<Conversation> {
        let sql = format!("SELECT {CONV_COLS} FROM conversations WHERE id = $1 AND {VISIBLE}");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(cerr)?;
        row.map(|r| conversation_from_row(&r)).transpose()?.ok_or_else(|| conv_missing(id))
    }

    async fn update_metadata(
        &self,
        owner: &Owner,
        id: &ConversationId,
        metadata: Metadata,
    ) -> ConvResult<Conversation> {
        let sql = format!(
            "UPDATE conversations SET metadata = $4, updated_at_ms = $3 WHERE id = $1 AND {VISIBLE} RETURNING {CONV_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .bind(to_json(&metadata)?)
            .fetch_optional(&self.pool)
            .await
            .map_err(cerr)?;
        row.map(|r| conversation_from_row(&r)).transpose()?.ok_or_else(|| conv_missing(id))
    }

    async fn delete_conversation(&self, owner: &Owner, id: &ConversationId) -> ConvResult<()> {
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        let sql = format!("DELETE FROM conversations WHERE id = $1 AND {VISIBLE}");
        let done =
            sqlx::query(&sql).bind(id.as_str()).bind(owner.tenant.as_str()).bind(now_ms()).execute(&mut *tx).await;
        if done.map_err(cerr)?.rows_affected() == 0 {
            return Err(conv_missing(id));
        }
        // Explicit as well as by cascade: a connection without foreign keys on leaves none behind.
        sqlx::query("DELETE FROM conversation_items WHERE conversation_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(cerr)?;
        tx.commit().await.map_err(cerr)
    }

    async fn list_items(&self, owner: &Owner, id: &ConversationId, query: &ListQuery) -> ConvResult<ItemPage> {
        self.get_conversation(owner, id).await?;
        let after = match &query.after {
            Some(item) => Some(self.item_seq(id, item).await?),
            None => None,
        };
        self.items_page(id, after, query).await
    }

    async fn history(
        &self,
        owner: &Owner,
        id: &ConversationId,
        max_items: u32,
    ) -> ConvResult<(Conversation, Vec<Item>)> {
        // The version first: a turn appended after this read makes the caller's append conflict.
        let conv = self.get_conversation(owner, id).await?;
        let rows =
            sqlx::query("SELECT body FROM conversation_items WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2")
                .bind(id.as_str())
                .bind(i64::from(max_items))
                .fetch_all(&self.pool)
                .await
                .map_err(cerr)?;
        let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok((conv, items))
    }

    async fn get_item(&self, owner: &Owner, id: &ConversationId, item: &ItemId) -> ConvResult<Item> {
        self.get_conversation(owner, id).await?;
        let row = sqlx::query("SELECT body FROM conversation_items WHERE conversation_id = $1 AND id = $2")
            .bind(id.as_str())
            .bind(item.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(cerr)?;
        row.map(|r| item_from_row(&r)).transpose()?.ok_or_else(|| ConversationError::not_found("item", item))
    }

    async fn delete_item(&self, owner: &Owner, id: &ConversationId, item: &ItemId) -> ConvResult<Conversation> {
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        let sql = format!(
            "UPDATE conversations SET version = version + 1, updated_at_ms = $3 WHERE id = $1 AND {VISIBLE} \
             RETURNING {CONV_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await
            .map_err(cerr)?;
        let conv = row.map(|r| conversation_from_row(&r)).transpose()?.ok_or_else(|| conv_missing(id))?;
        let done = sqlx::query("DELETE FROM conversation_items WHERE conversation_id = $1 AND id = $2")
            .bind(id.as_str())
            .bind(item.as_str())
            .execute(&mut *tx)
            .await
            .map_err(cerr)?;
        if done.rows_affected() == 0 {
            return Err(ConversationError::not_found("item", item)); // rolls the bump back
        }
        tx.commit().await.map_err(cerr)?;
        Ok(conv)
    }

    async fn add_items(
        &self,
        owner: &Owner,
        id: &ConversationId,
        items: Vec<Item>,
        expires_at_ms: Option<i64>,
    ) -> ConvResult<Conversation> {
        self.add_items_tx(owner, id, items, expires_at_ms).await
    }

    async fn append_turn(&self, owner: &Owner, turn: Turn) -> ConvResult<Conversation> {
        self.append_turn_tx(owner, turn).await
    }

    async fn store_response(&self, response: StoredResponse, input: Vec<Item>) -> ConvResult<()> {
        self.store_response_tx(response, input).await
    }

    async fn get_response(&self, owner: &Owner, id: &ResponseId) -> ConvResult<StoredResponse> {
        let sql = format!("SELECT {RESPONSE_COLS} FROM stored_responses WHERE id = $1 AND {VISIBLE}");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(cerr)?;
        row.map(|r| response_from_row(&r)).transpose()?.ok_or_else(|| ConversationError::not_found("response", id))
    }

    async fn delete_response(&self, owner: &Owner, id: &ResponseId) -> ConvResult<()> {
        let sql = format!("DELETE FROM stored_responses WHERE id = $1 AND {VISIBLE}");
        let done = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(cerr)?;
        match done.rows_affected() {
            0 => Err(ConversationError::not_found("response", id)),
            _ => Ok(()),
        }
    }

    async fn response_input(&self, owner: &Owner, id: &ResponseId) -> ConvResult<Vec<Item>> {
        let sql = format!("SELECT input_items FROM stored_responses WHERE id = $1 AND {VISIBLE}");
        let json: Option<String> = sqlx::query_scalar(&sql)
            .bind(id.as_str())
            .bind(owner.tenant.as_str())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(cerr)?;
        let json = json.ok_or_else(|| ConversationError::not_found("response", id))?;
        Ok(from_json("response input items", &json)?)
    }

    async fn purge_expired(&self, now_ms: i64) -> ConvResult<Purged> {
        const EXPIRED: &str = "expires_at_ms IS NOT NULL AND expires_at_ms <= $1";
        let mut tx = self.pool.begin().await.map_err(cerr)?;
        let items = format!(
            "DELETE FROM conversation_items WHERE conversation_id IN (SELECT id FROM conversations WHERE {EXPIRED})"
        );
        let items = sqlx::query(&items).bind(now_ms).execute(&mut *tx).await.map_err(cerr)?.rows_affected();
        let convs = format!("DELETE FROM conversations WHERE {EXPIRED}");
        let conversations = sqlx::query(&convs).bind(now_ms).execute(&mut *tx).await.map_err(cerr)?.rows_affected();
        let resps = format!("DELETE FROM stored_responses WHERE {EXPIRED}");
        let responses = sqlx::query(&resps).bind(now_ms).execute(&mut *tx).await.map_err(cerr)?.rows_affected();
        tx.commit().await.map_err(cerr)?;
        Ok(Purged { conversations, items, responses })
    }

    async fn count_conversations(&self, tenant: &TenantId) -> ConvResult<u64> {
        count_visible(&self.pool, tenant.as_str(), now_ms()).await
    }
}
