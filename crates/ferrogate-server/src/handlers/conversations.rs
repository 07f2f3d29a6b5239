//! OpenAI's Conversations API: `/v1/conversations` create (with initial items and metadata),
//! retrieve, update metadata, delete; `POST`/`GET /v1/conversations/{id}/items`, `GET`/`DELETE
//! /v1/conversations/{id}/items/{item_id}`.
//!
//! Everything is scoped by the caller's tenant (`Owner`): another tenant's ids answer 404 like
//! ids that never existed. Errors take OpenAI's shape. Without a conversation store (tenancy off
//! and no `conversations.database_url`) every route answers 404 saying how to turn it on.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use ferrogate_core::conversations::{
    ConversationError, ConversationId, Item, ItemId, ListQuery, NewConversation, Order, Owner,
};
use ferrogate_protocol::openai::conversations::{
    ConversationDeleted, CreateConversation, CreateItems, UpdateConversation,
};
use ferrogate_protocol::openai::responses::{InputMessage, ListPage};
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::handlers::decode;
use crate::request::RequestCx;
use crate::state::{AppState, ConvService};

impl From<ConversationError> for ApiError {
    fn from(e: ConversationError) -> Self {
        match e {
            ConversationError::NotFound { what, id } => ApiError::not_found(what, &id),
            ConversationError::Conflict { .. } => {
                ApiError::new(ErrorCode::Conflict, format!("{e}; read the conversation again and retry the turn"))
            }
            ConversationError::CapReached { .. } => ApiError::new(ErrorCode::ConversationLimitReached, e.to_string()),
            ConversationError::Store(s) => ApiError::from(s),
        }
    }
}

/// The conversation store, or 404 naming how to turn the endpoints on.
pub fn service(st: &AppState) -> Result<&ConvService, ApiError> {
    st.conversations.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownUrl,
            "The Responses and Conversations APIs need a database: turn tenancy on, or set \
             conversations.database_url",
        )
    })
}

/// Whose state this is: the caller's tenant and key; static keys and an open gateway share one
/// fixed owner.
pub fn owner(cx: &RequestCx) -> Owner {
    let principal = cx.caller.as_ref().map(|c| &c.principal);
    match principal.and_then(|p| p.tenant_id().map(|t| (t, p.key_id()))) {
        Some((tenant, key)) => Owner::new(tenant.clone(), key.cloned()),
        None => Owner::anonymous(),
    }
}

/// `after`, `limit` and `order` of an item list.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    after: Option<String>,
    limit: Option<u32>,
    order: Option<Order>,
}

impl ListParams {
    /// The store's page request; an `after` that is not an item id is a 400.
    pub fn query(&self) -> Result<ListQuery, ApiError> {
        let after = match &self.after {
            None => None,
            Some(a) => Some(ItemId::parse(a).ok_or_else(|| ApiError::invalid(Some("after".into()), "not an item id"))?),
        };
        let d = ListQuery::default();
        Ok(ListQuery { after, limit: self.limit.unwrap_or(d.limit), order: self.order.unwrap_or(d.order) })
    }
}

fn conversation_id(id: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(id).ok_or_else(|| ApiError::not_found("conversation", id))
}

fn item_id(id: &str) -> Result<ItemId, ApiError> {
    ItemId::parse(id).ok_or_else(|| ApiError::not_found("item", id))
}

fn items_of(messages: &[InputMessage]) -> Vec<Item> {
    messages.iter().map(|m| Item::new(m.role, m.parts())).collect()
}

/// `POST /v1/conversations`.
pub async fn create(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let req: CreateConversation = decode(body, st.settings.body_limit)?;
    req.validate()?;
    let now = conv.clock.now_ms();
    let new = NewConversation {
        owner: owner(&cx),
        metadata: req.metadata.unwrap_or_default(),
        items: items_of(req.items.as_deref().unwrap_or_default()),
        expires_at_ms: conv.retention.conversation_expiry(now),
        cap: conv.retention.max_conversations_per_tenant,
    };
    let created = conv.store.create_conversation(new).await?;
    Ok(Json(created.to_wire()).into_response())
}

/// `GET /v1/conversations/{id}`.
pub async fn retrieve(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let found = conv.store.get_conversation(&owner(&cx), &conversation_id(&id)?).await?;
    Ok(Json(found.to_wire()).into_response())
}

/// `POST /v1/conversations/{id}`: replaces the metadata.
pub async fn update(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let cid = conversation_id(&id)?;
    let req: UpdateConversation = decode(body, st.settings.body_limit)?;
    req.validate()?;
    let updated = conv.store.update_metadata(&owner(&cx), &cid, req.metadata).await?;
    Ok(Json(updated.to_wire()).into_response())
}

/// `DELETE /v1/conversations/{id}`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    conv.store.delete_conversation(&owner(&cx), &conversation_id(&id)?).await?;
    Ok(Json(ConversationDeleted::new(id)).into_response())
}

/// `POST /v1/conversations/{id}/items`: the added items, as a list.
pub async fn add_items(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let cid = conversation_id(&id)?;
    let req: CreateItems = decode(body, st.settings.body_limit)?;
    req.validate()?;
    let items = items_of(&req.items);
    let expiry = conv.retention.conversation_expiry(conv.clock.now_ms());
    conv.store.add_items(&owner(&cx), &cid, items.clone(), expiry).await?;
    Ok(Json(ListPage::of_items(items.iter().map(Item::to_wire).collect(), false)).into_response())
}

/// `GET /v1/conversations/{id}/items`.
pub async fn list_items(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let page = conv.store.list_items(&owner(&cx), &conversation_id(&id)?, &params.query()?).await?;
    Ok(Json(page.to_wire()).into_response())
}

/// `GET /v1/conversations/{id}/items/{item_id}`.
pub async fn get_item(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path((id, item)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let found = conv.store.get_item(&owner(&cx), &conversation_id(&id)?, &item_id(&item)?).await?;
    Ok(Json(found.to_wire()).into_response())
}

/// `DELETE /v1/conversations/{id}/items/{item_id}`: the conversation.
pub async fn delete_item(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path((id, item)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let updated = conv.store.delete_item(&owner(&cx), &conversation_id(&id)?, &item_id(&item)?).await?;
    Ok(Json(updated.to_wire()).into_response())
}

/// Every `conversations.purge_interval_secs`, removes expired conversations (with their items)
/// and expired stored responses (reads already hide them; this frees the space). Idempotent, so
/// every replica may run it.
pub fn spawn_purge(st: &AppState) {
    let Some(conv) = &st.conversations else { return };
    let every = std::time::Duration::from_secs(conv.settings.purge_interval_secs);
    let st2 = st.clone();
    st.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = st2.stopping.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let Some(conv) = &st2.conversations else { return };
            match conv.store.purge_expired(conv.clock.now_ms()).await {
                Ok(p) if p.conversations + p.responses > 0 => tracing::info!(
                    conversations = p.conversations,
                    items = p.items,
                    responses = p.responses,
                    "expired conversations and responses purged"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired conversations failed"),
            }
        }
    });
}
