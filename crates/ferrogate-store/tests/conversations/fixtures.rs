//! Builders for the suite: owners, items, responses, turns.

use ferrogate_core::conversations::wire::{ItemRole, Part, Response, ResponseStatus, ResponsesRequest};
use ferrogate_core::conversations::{
    Conversation, ConversationId, ConversationStore, Item, Metadata, NewConversation, Owner, ResponseId,
    StoredResponse, Turn,
};
use ferrogate_core::tenancy::TenantId;
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_store::Store;

/// `history`'s bound when a test wants every item.
pub const ALL: u32 = u32::MAX;

pub fn owner(tenant: &str) -> Owner {
    Owner::new(TenantId::from(tenant), None)
}

pub fn user(text: &str) -> Item {
    Item::new(ItemRole::User, vec![Part::InputText { text: text.into() }])
}

pub fn assistant(text: &str) -> Item {
    Item::new(ItemRole::Assistant, vec![Part::output_text(text)])
}

pub fn new_conversation(owner: &Owner, items: Vec<Item>) -> NewConversation {
    NewConversation { owner: owner.clone(), metadata: Metadata::new(), items, expires_at_ms: None, cap: None }
}

pub async fn create(store: &Store, owner: &Owner, items: Vec<Item>) -> Conversation {
    store.create_conversation(new_conversation(owner, items)).await.unwrap()
}

/// A completed response whose output is `output`.
pub fn response(
    owner: &Owner,
    conv: Option<&ConversationId>,
    previous: Option<&ResponseId>,
    output: &[Item],
) -> StoredResponse {
    let req: ResponsesRequest = serde_json::from_value(serde_json::json!({"model": "m", "input": "x"})).unwrap();
    let id = ResponseId::generate();
    let mut body = Response::started(id.as_str(), 1, &req);
    body.status = ResponseStatus::Completed;
    body.output = output.iter().map(Item::to_wire).collect();
    StoredResponse {
        id,
        owner: owner.clone(),
        conversation: conv.cloned(),
        previous: previous.cloned(),
        created_at_ms: now_ms(),
        expires_at_ms: None,
        body,
    }
}

/// A user turn and its answer, expected at `version`, with its response stored.
pub fn turn(owner: &Owner, conv: &Conversation, version: i64, q: &str, a: &str) -> Turn {
    let output = vec![assistant(a)];
    Turn {
        conversation: conv.id.clone(),
        expected_version: version,
        input: vec![user(q)],
        response: Some(response(owner, Some(&conv.id), None, &output)),
        output,
        expires_at_ms: None,
    }
}

/// The texts of items.
pub fn texts(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.to_wire().text()).collect()
}

/// Rows in a table, read with a connection of its own.
pub async fn count_rows(url: &str, table: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut conn).await.unwrap()
}
