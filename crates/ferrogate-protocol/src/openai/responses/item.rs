//! Message items — what a response's input and output, and a conversation, are made of — and
//! the list page every item listing answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::super::InvalidParam;
use super::super::chat::Role;
use super::super::shape::{MAX_METADATA_KEY_BYTES, MAX_METADATA_PAIRS, MAX_METADATA_VALUE_BYTES, clip};

/// `metadata`: up to 16 string pairs (see [`check_metadata`]); ordered, so it serializes stably.
pub type Metadata = BTreeMap<String, String>;

/// Who wrote a message item. Tool calls and results are their own items (`call.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemRole {
    User,
    Assistant,
    System,
    Developer,
}

impl ItemRole {
    /// The chat role of the same name.
    pub fn chat_role(self) -> Role {
        match self {
            ItemRole::User => Role::User,
            ItemRole::Assistant => Role::Assistant,
            ItemRole::System => Role::System,
            ItemRole::Developer => Role::Developer,
        }
    }

    /// `user`, `assistant`, `system` or `developer`.
    pub fn as_str(self) -> &'static str {
        self.chat_role().as_str()
    }
}

/// An item's progress; stored items are `completed` (or `incomplete` when cut by a limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    InProgress,
    #[default]
    Completed,
    Incomplete,
}

/// One content part of a message item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text the caller wrote.
    InputText { text: String },
    /// Text the model wrote; `annotations` is always present (`[]`), as the SDKs expect.
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Vec<serde_json::Value>,
    },
    /// The model declined.
    Refusal { refusal: String },
}

impl Part {
    /// The part's text (a refusal's explanation included).
    pub fn text(&self) -> &str {
        match self {
            Part::InputText { text } | Part::OutputText { text, .. } => text,
            Part::Refusal { refusal } => refusal,
        }
    }

    /// An `output_text` part without annotations.
    pub fn output_text(text: impl Into<String>) -> Part {
        Part::OutputText { text: text.into(), annotations: Vec::new() }
    }
}

/// A `message` item as the API shows it: in a response's `output`, in `input_items`, and in a
/// conversation's item list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `msg_…`.
    pub id: String,
    pub status: ItemStatus,
    pub role: ItemRole,
    pub content: Vec<Part>,
}

impl MessageItem {
    /// A completed message item.
    pub fn new(id: impl Into<String>, role: ItemRole, content: Vec<Part>) -> Self {
        Self { kind: "message".into(), id: id.into(), status: ItemStatus::Completed, role, content }
    }

    /// The text of every part, joined.
    pub fn text(&self) -> String {
        self.content.iter().map(Part::text).collect()
    }
}

/// A cursor page of a list (`object: "list"`): conversation items, a response's input items.
/// `first_id`/`last_id` are `null` for an empty page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage<T> {
    /// Always `list`.
    pub object: String,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// OpenAI's bounds on `metadata`: at most 16 pairs, keys ≤ 64 bytes, values ≤ 512 bytes.
pub fn check_metadata(m: &Metadata) -> Result<(), InvalidParam> {
    if m.len() > MAX_METADATA_PAIRS {
        return Err(InvalidParam::new("metadata", format!("'metadata' holds at most {MAX_METADATA_PAIRS} pairs")));
    }
    for (k, v) in m {
        if k.len() > MAX_METADATA_KEY_BYTES {
            let msg = format!("metadata keys are at most {MAX_METADATA_KEY_BYTES} bytes long: '{}'", clip(k));
            return Err(InvalidParam::new("metadata", msg));
        }
        if v.len() > MAX_METADATA_VALUE_BYTES {
            let msg = format!("metadata values are at most {MAX_METADATA_VALUE_BYTES} bytes long");
            return Err(InvalidParam::new(format!("metadata.{}", clip(k)), msg));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    /// The shape of an item in the Conversations API reference's "list items" example.
    #[test]
    fn a_documented_item_round_trips() {
        let doc = json!({
            "type": "message", "id": "msg_abc", "status": "completed", "role": "user",
            "content": [{"type": "input_text", "text": "Hello!"}]
        });
        let item: MessageItem = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!((item.role, item.text().as_str()), (ItemRole::User, "Hello!"));
        assert_eq!(serde_json::to_value(&item).unwrap(), doc);
    }

    #[test]
    fn output_text_always_carries_annotations() {
        let v = serde_json::to_value(Part::output_text("hi")).unwrap();
        assert_eq!(v, json!({"type": "output_text", "text": "hi", "annotations": []}));
        let unknown = serde_json::from_value::<Part>(json!({"type": "input_image", "image_url": "x"}));
        assert!(unknown.is_err(), "non-text parts are refused, not dropped");
    }

    #[test]
    fn pages_name_their_first_and_last_ids() {
        let items = vec![
            MessageItem::new("msg_1", ItemRole::User, vec![]).into(),
            MessageItem::new("msg_2", ItemRole::Assistant, vec![]).into(),
        ];
        let page = ListPage::of_items(items, true);
        assert_eq!((page.first_id.as_deref(), page.last_id.as_deref()), (Some("msg_1"), Some("msg_2")));
        let empty = serde_json::to_value(ListPage::of_items(vec![], false)).unwrap();
        assert_eq!(empty, json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}));
    }

    #[test]
    fn metadata_is_bounded() {
        let mut m: Metadata = (0..16).map(|i| (i.to_string(), "v".into())).collect();
        assert!(check_metadata(&m).is_ok());
        m.insert("x".into(), "v".into());
        assert_eq!(check_metadata(&m).unwrap_err().param, "metadata");
        let long: Metadata = [("k".into(), "v".repeat(513))].into();
        assert_eq!(check_metadata(&long).unwrap_err().param, "metadata.k");
    }
}
