//! The [`ConversationStore`] trait: conversations, their items and stored responses, scoped by
//! [`Owner`], implemented by `ferrogate-store` for SQLite and PostgreSQL.
//!
//! Invariants every implementation keeps (the behaviour suite checks them on both engines):
//! - Every read and write is filtered by the owner's tenant: another tenant gets `NotFound`.
//! - Expired rows (`expires_at_ms` ≤ now) are invisible before [`ConversationStore::purge_expired`]
//!   removes them.
//! - [`ConversationStore::append_turn`] is one transaction: the version check, the items and the
//!   response land together or not at all. Of N concurrent turns naming one version exactly one
//!   succeeds; the others get [`ConversationError::Conflict`]. Items get consecutive positions.

use async_trait::async_trait;
use ferrogate_protocol::openai::responses::Metadata;

use super::error::ConversationError;
use super::ids::{ConversationId, ItemId, ResponseId};
use super::model::{Conversation, Item, ItemPage, ListQuery, NewConversation, Owner, Purged, StoredResponse, Turn};
use crate::tenancy::TenantId;

/// Shorthand for store results.
pub type ConvResult<T> = Result<T, ConversationError>;

/// Conversations, items and stored responses.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Creates a conversation with its initial items (at version 0).
    /// [`ConversationError::CapReached`] when the tenant already holds `new.cap` conversations;
    /// creations of one tenant are serialized, so the cap is exact under concurrency.
    async fn create_conversation(&self, new: NewConversation) -> ConvResult<Conversation>;
    /// The conversation.
    async fn get_conversation(&self, owner: &Owner, id: &ConversationId) -> ConvResult<Conversation>;
    /// Replaces the metadata.
    async fn update_metadata(&self, owner: &Owner, id: &ConversationId, metadata: Metadata)
    -> ConvResult<Conversation>;
    /// Deletes the conversation and its items (its stored responses stay until they expire or
    /// are deleted).
    async fn delete_conversation(&self, owner: &Owner, id: &ConversationId) -> ConvResult<()>;

    /// A page of the conversation's items.
    async fn list_items(&self, owner: &Owner, id: &ConversationId, query: &ListQuery) -> ConvResult<ItemPage>;
    /// The conversation (with the version to pass to [`Self::append_turn`]) and its latest
    /// `max_items` items, oldest first (the context policy drops old turns anyway; the bound
    /// keeps a very long conversation from being read whole every turn). The version is read
    /// before the items, so a turn appended in between makes the later append conflict rather
    /// than go unseen.
    async fn history(
        &self,
        owner: &Owner,
        id: &ConversationId,
        max_items: u32,
    ) -> ConvResult<(Conversation, Vec<Item>)>;
    /// One item.
    async fn get_item(&self, owner: &Owner, id: &ConversationId, item: &ItemId) -> ConvResult<Item>;
    /// Deletes one item (bumps the version); returns the conversation.
    async fn delete_item(&self, owner: &Owner, id: &ConversationId, item: &ItemId) -> ConvResult<Conversation>;
    /// Appends items outside a turn (`POST /v1/conversations/{id}/items`), bumping the version;
    /// no version check: the database serializes the appends.
    async fn add_items(
        &self,
        owner: &Owner,
        id: &ConversationId,
        items: Vec<Item>,
        expires_at_ms: Option<i64>,
    ) -> ConvResult<Conversation>;
    /// Appends a turn atomically, checking the version (see the module's invariants); returns
    /// the conversation at its new version.
    async fn append_turn(&self, owner: &Owner, turn: Turn) -> ConvResult<Conversation>;

    /// Stores a response (not part of a conversation turn) with its input items.
    async fn store_response(&self, response: StoredResponse, input: Vec<Item>) -> ConvResult<()>;
    /// A stored response.
    async fn get_response(&self, owner: &Owner, id: &ResponseId) -> ConvResult<StoredResponse>;
    /// Deletes a stored response.
    async fn delete_response(&self, owner: &Owner, id: &ResponseId) -> ConvResult<()>;
    /// All input items of a stored response, oldest first.
    async fn response_input(&self, owner: &Owner, id: &ResponseId) -> ConvResult<Vec<Item>>;

    /// Removes conversations (with their items) and responses that expired at or before
    /// `now_ms`.
    async fn purge_expired(&self, now_ms: i64) -> ConvResult<Purged>;
    /// How many conversations a tenant holds (expired ones not counted).
    async fn count_conversations(&self, tenant: &TenantId) -> ConvResult<u64>;

    /// A page of a response's input items (`GET /v1/responses/{id}/input_items`).
    async fn response_input_page(&self, owner: &Owner, id: &ResponseId, query: &ListQuery) -> ConvResult<ItemPage> {
        let mut all = self.response_input(owner, id).await?;
        if query.order == super::model::Order::Desc {
            all.reverse();
        }
        Ok(ItemPage::slice(all, query))
    }

    /// The context a `previous_response_id` stands for: the chain of stored responses ending at
    /// `id`, each one's input then output, oldest first (the chain ends early at a link that was
    /// deleted or expired; `id` itself must exist). At most `max_depth` responses are
    /// followed (older ones are left out, as the context policy would drop them anyway).
    async fn response_chain(&self, owner: &Owner, id: &ResponseId, max_depth: usize) -> ConvResult<Vec<Item>> {
        let mut turns = Vec::new();
        let mut next = Some(id.clone());
        while let Some(rid) = next.take() {
            if turns.len() >= max_depth {
                break;
            }
            let stored = match self.get_response(owner, &rid).await {
                Ok(s) => s,
                // An older link deleted or expired: the chain ends there.
                Err(ConversationError::NotFound { .. }) if !turns.is_empty() => break,
                Err(e) => return Err(e),
            };
            let mut turn = self.response_input(owner, &rid).await?;
            turn.extend(stored.body.output.iter().map(Item::from_wire));
            turns.push(turn);
            next = stored.previous;
        }
        Ok(turns.into_iter().rev().flatten().collect())
    }
}
