//! The OpenAI Conversations API (`/v1/conversations`): the conversation object, its create and
//! update bodies, the deleted marker, and the body that adds items.
//!
//! Items are the Responses API's [`MessageItem`]s; listing them answers a
//! [`ListPage`](super::responses::ListPage).

use serde::{Deserialize, Serialize};

use super::InvalidParam;
use super::responses::{InputMessage, Metadata, check_metadata};

/// Most items one create or add call may carry (OpenAI's bound).
pub const MAX_ITEMS_PER_CALL: usize = 20;

/// The conversation object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// `conv_…`.
    pub id: String,
    /// Always `conversation`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    pub metadata: Metadata,
}

impl Conversation {
    pub fn new(id: impl Into<String>, created_at: u64, metadata: Metadata) -> Self {
        Self { id: id.into(), object: "conversation".into(), created_at, metadata }
    }
}

/// `POST /v1/conversations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateConversation {
    #[serde(default)]
    pub items: Option<Vec<InputMessage>>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

impl CreateConversation {
    pub fn validate(&self) -> Result<(), InvalidParam> {
        check_items(self.items.as_deref().unwrap_or_default())?;
        self.metadata.as_ref().map_or(Ok(()), check_metadata)
    }
}

/// `POST /v1/conversations/{id}`: replaces the metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateConversation {
    pub metadata: Metadata,
}

impl UpdateConversation {
    pub fn validate(&self) -> Result<(), InvalidParam> {
        check_metadata(&self.metadata)
    }
}

/// `POST /v1/conversations/{id}/items`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateItems {
    pub items: Vec<InputMessage>,
}

impl CreateItems {
    pub fn validate(&self) -> Result<(), InvalidParam> {
        if self.items.is_empty() {
            return Err(InvalidParam::new("items", "'items' must contain at least one item"));
        }
        check_items(&self.items)
    }
}

fn check_items(items: &[InputMessage]) -> Result<(), InvalidParam> {
    if items.len() > MAX_ITEMS_PER_CALL {
        return Err(InvalidParam::new("items", format!("at most {MAX_ITEMS_PER_CALL} items may be added at a time")));
    }
    match items.iter().position(|m| m.kind.as_deref().is_some_and(|k| k != "message")) {
        Some(i) => Err(InvalidParam::new(format!("items[{i}].type"), "only 'message' items are supported")),
        None => Ok(()),
    }
}

/// `DELETE /v1/conversations/{id}` (and, with object `conversation.item.deleted`, is not used for
/// items: deleting an item answers the conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationDeleted {
    pub id: String,
    /// Always `conversation.deleted`.
    pub object: String,
    pub deleted: bool,
}

impl ConversationDeleted {
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), object: "conversation.deleted".into(), deleted: true }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::openai::responses::ItemRole;

    /// The API reference's create example.
    #[test]
    fn the_documented_create_body_reads() {
        let c: CreateConversation = serde_json::from_value(json!({
            "metadata": {"topic": "demo"},
            "items": [{"type": "message", "role": "user", "content": "Hello!"}]
        }))
        .unwrap();
        assert!(c.validate().is_ok());
        let items = c.items.unwrap();
        assert_eq!(items[0].role, ItemRole::User);
        assert_eq!(items[0].parts()[0].text(), "Hello!");
        let empty: CreateConversation = serde_json::from_value(json!({})).unwrap();
        assert!(empty.validate().is_ok(), "both fields are optional");
    }

    #[test]
    fn objects_serialize_as_documented() {
        let conv = Conversation::new("conv_123", 1741900000, [("topic".to_owned(), "demo".to_owned())].into());
        assert_eq!(
            serde_json::to_value(conv).unwrap(),
            json!({"id": "conv_123", "object": "conversation", "created_at": 1741900000, "metadata": {"topic": "demo"}})
        );
        assert_eq!(
            serde_json::to_value(ConversationDeleted::new("conv_123")).unwrap(),
            json!({"id": "conv_123", "object": "conversation.deleted", "deleted": true})
        );
    }

    #[test]
    fn item_batches_are_bounded() {
        let one = json!({"role": "user", "content": "x"});
        let many: CreateItems = serde_json::from_value(json!({"items": vec![one.clone(); 21]})).unwrap();
        assert_eq!(many.validate().unwrap_err().param, "items");
        let none: CreateItems = serde_json::from_value(json!({"items": []})).unwrap();
        assert!(none.validate().is_err());
        let ok: CreateItems = serde_json::from_value(json!({"items": [one]})).unwrap();
        assert!(ok.validate().is_ok());
    }
}
