//! The plain types of conversations and stored responses: who owns them, what they hold, and
//! the shapes store calls take and return.

use ferrogate_protocol::openai::responses::{
    FunctionCallItem, FunctionCallOutputItem, ItemRole, ItemStatus, MessageItem, Metadata, Part, Response, ResponseItem,
};
use serde::{Deserialize, Serialize};

use super::ids::{ConversationId, ItemId, ResponseId};
use crate::tenancy::{KeyId, TenantId};

/// Whose a conversation or response is. Everything is scoped by `tenant`: another tenant's ids
/// are `NotFound`, never "forbidden" (which would confirm they exist). `key` records which key
/// made it (for audit; keys of one tenant share its state, as projects do at OpenAI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The tenant everything is scoped by.
    pub tenant: TenantId,
    /// The key that made it (`None` without auth).
    pub key: Option<KeyId>,
}

impl Owner {
    /// The tenant id used when the gateway runs without authentication: one shared owner.
    pub const ANONYMOUS_TENANT: &'static str = "-";

    /// An owner.
    pub fn new(tenant: TenantId, key: Option<KeyId>) -> Self {
        Self { tenant, key }
    }

    /// The owner of everything when no keys exist (auth off).
    pub fn anonymous() -> Self {
        Self { tenant: TenantId::from(Self::ANONYMOUS_TENANT), key: None }
    }
}

/// A conversation: an ordered list of items plus metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `conv_…`.
    pub id: ConversationId,
    /// Its owner.
    pub owner: Owner,
    /// Up to 16 string pairs.
    pub metadata: Metadata,
    /// Bumped by every change to the item list; a turn names the version it read
    /// ([`Turn::expected_version`]), so two turns on one conversation never interleave.
    pub version: i64,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
    /// When retention removes it (`None`: kept until deleted). Refreshed by every append.
    pub expires_at_ms: Option<i64>,
}

impl Conversation {
    /// The wire object.
    pub fn to_wire(&self) -> ferrogate_protocol::openai::conversations::Conversation {
        let created = u64::try_from(self.created_at_ms / 1000).unwrap_or(0);
        ferrogate_protocol::openai::conversations::Conversation::new(self.id.as_str(), created, self.metadata.clone())
    }
}

/// One item, as stored (as JSON: `id`, `status` and the body's fields — a message's `role` and
/// `content` parts, a function call's `call_id`, `name` and `arguments`, a function output's
/// `call_id` and `output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// `msg_…`, `fc_…` (a function call) or `fco_…` (a function's output).
    pub id: ItemId,
    /// `completed`, or `incomplete` when a limit cut it.
    pub status: ItemStatus,
    /// What the item says.
    #[serde(flatten)]
    pub body: ItemBody,
}

/// What an item says. Stored untagged: the field sets tell the kinds apart, and rows written
/// before function calls existed (messages) read unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemBody {
    /// The model asked for a function call.
    FunctionCall {
        /// Ties the call to its output.
        call_id: String,
        /// The function's name.
        name: String,
        /// The arguments as JSON text.
        arguments: String,
    },
    /// The caller's function returned.
    FunctionCallOutput {
        /// The call this answers.
        call_id: String,
        /// The result as text.
        output: String,
    },
    /// A message.
    Message {
        /// Who wrote it.
        role: ItemRole,
        /// Its text parts.
        content: Vec<Part>,
    },
}

impl Item {
    /// A completed message with a fresh id.
    pub fn new(role: ItemRole, content: Vec<Part>) -> Self {
        Self { id: ItemId::generate(), status: ItemStatus::Completed, body: ItemBody::Message { role, content } }
    }

    /// Who the item is from, as the `role` column records it: a message's role, `assistant` for
    /// a function call, `tool` for a function's output.
    pub fn role_label(&self) -> &'static str {
        match &self.body {
            ItemBody::Message { role, .. } => role.as_str(),
            ItemBody::FunctionCall { .. } => "assistant",
            ItemBody::FunctionCallOutput { .. } => "tool",
        }
    }

    /// A message's role (`None` for function items).
    pub fn role(&self) -> Option<ItemRole> {
        match &self.body {
            ItemBody::Message { role, .. } => Some(*role),
            _ => None,
        }
    }

    /// The wire item.
    pub fn to_wire(&self) -> ResponseItem {
        let id = self.id.as_str();
        let mut item: ResponseItem = match &self.body {
            ItemBody::Message { role, content } => MessageItem::new(id, *role, content.clone()).into(),
            ItemBody::FunctionCall { call_id, name, arguments } => {
                ResponseItem::FunctionCall(FunctionCallItem::new(id, call_id.clone(), name.clone(), arguments))
            }
            ItemBody::FunctionCallOutput { call_id, output } => {
                ResponseItem::FunctionCallOutput(FunctionCallOutputItem::new(id, call_id.clone(), output.clone()))
            }
        };
        match &mut item {
            ResponseItem::Message(m) => m.status = self.status,
            ResponseItem::FunctionCall(c) => c.status = self.status,
            ResponseItem::FunctionCallOutput(o) => o.status = self.status,
        }
        item
    }

    /// An item from the wire (a response's output), keeping its id when it has an item id's
    /// shape, else with a fresh one of its kind.
    pub fn from_wire(w: &ResponseItem) -> Self {
        let mut item = Self::fresh(w);
        if let Some(id) = ItemId::parse(w.id()) {
            item.id = id;
        }
        item
    }

    /// An item from the wire with a fresh id of its kind (input: a client's ids are never
    /// trusted to be unique).
    pub fn fresh(w: &ResponseItem) -> Self {
        let (prefix, body) = match w {
            ResponseItem::Message(m) => {
                (ItemId::PREFIX, ItemBody::Message { role: m.role, content: m.content.clone() })
            }
            ResponseItem::FunctionCall(c) => (
                ItemId::CALL_PREFIX,
                ItemBody::FunctionCall {
                    call_id: c.call_id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
            ),
            ResponseItem::FunctionCallOutput(o) => (
                ItemId::OUTPUT_PREFIX,
                ItemBody::FunctionCallOutput { call_id: o.call_id.clone(), output: o.output.clone() },
            ),
        };
        Self { id: ItemId::generate_with(prefix), status: w.status(), body }
    }
}

/// A response kept for `GET /v1/responses/{id}`, `previous_response_id` and `input_items`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// `resp_…`.
    pub id: ResponseId,
    /// Its owner.
    pub owner: Owner,
    /// The conversation the turn was appended to, if any.
    pub conversation: Option<ConversationId>,
    /// The response this one continued, if any.
    pub previous: Option<ResponseId>,
    /// When it was made (unix ms).
    pub created_at_ms: i64,
    /// When retention removes it (`None`: kept until deleted).
    pub expires_at_ms: Option<i64>,
    /// The whole response object: status, request parameters, output items, usage, error.
    pub body: Response,
}

/// `POST /v1/conversations`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    /// Who creates it.
    pub owner: Owner,
    /// Up to 16 string pairs.
    pub metadata: Metadata,
    /// Initial items, appended in order.
    pub items: Vec<Item>,
    /// When retention removes it unless appended to.
    pub expires_at_ms: Option<i64>,
    /// Most conversations the owner's tenant may hold; creating one more is refused.
    pub cap: Option<u64>,
}

/// One turn appended to a conversation, whole or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// The conversation the turn belongs to.
    pub conversation: ConversationId,
    /// The [`Conversation::version`] the turn's context was read at; if the conversation has
    /// changed since, the append is refused with a conflict (→ 409).
    pub expected_version: i64,
    /// The new input items, in order.
    pub input: Vec<Item>,
    /// The model's output items, after the input.
    pub output: Vec<Item>,
    /// The response to store in the same transaction (`store: true`), its input being `input`.
    pub response: Option<StoredResponse>,
    /// The conversation's new expiry (retention slides with use).
    pub expires_at_ms: Option<i64>,
}

/// Oldest or newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// OpenAI's default for item lists.
    #[default]
    Desc,
}

/// A page request of an item list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Start after this item (exclusive), in the list's order.
    pub after: Option<ItemId>,
    /// 1..=100 (clamped).
    pub limit: u32,
    /// Oldest or newest first.
    pub order: Order,
}

impl ListQuery {
    /// Most items one page holds.
    pub const MAX_LIMIT: u32 = 100;

    /// The page size, clamped to `1..=100`.
    pub fn limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

impl Default for ListQuery {
    fn default() -> Self {
        Self { after: None, limit: 20, order: Order::Desc }
    }
}

/// One page of items.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemPage {
    /// The items, in the asked order.
    pub items: Vec<Item>,
    /// Whether items follow this page.
    pub has_more: bool,
}

impl ItemPage {
    /// The wire page.
    pub fn to_wire(&self) -> ferrogate_protocol::openai::responses::ListPage<ResponseItem> {
        ferrogate_protocol::openai::responses::ListPage::of_items(
            self.items.iter().map(Item::to_wire).collect(),
            self.has_more,
        )
    }

    /// A page cut from a whole list (already in the asked order): what follows `after`, at most
    /// `limit` items. An `after` not in the list gives an empty page.
    pub fn slice(all: Vec<Item>, query: &ListQuery) -> ItemPage {
        let start = match &query.after {
            None => 0,
            Some(after) => all.iter().position(|i| &i.id == after).map_or(all.len(), |p| p + 1),
        };
        let limit = query.limit() as usize;
        let rest: Vec<Item> = all.into_iter().skip(start).collect();
        let has_more = rest.len() > limit;
        ItemPage { items: rest.into_iter().take(limit).collect(), has_more }
    }
}

/// What [`purge_expired`](super::ConversationStore::purge_expired) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Conversations removed.
    pub conversations: u64,
    /// Their items removed.
    pub items: u64,
    /// Stored responses removed.
    pub responses: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn items(n: usize) -> Vec<Item> {
        (0..n).map(|i| Item::new(ItemRole::User, vec![Part::InputText { text: i.to_string() }])).collect()
    }

    #[test]
    fn pages_slice_after_a_cursor() {
        let all = items(5);
        let q = ListQuery { after: None, limit: 2, order: Order::Asc };
        let p1 = ItemPage::slice(all.clone(), &q);
        assert_eq!((p1.items.len(), p1.has_more), (2, true));
        let q2 = ListQuery { after: Some(p1.items[1].id.clone()), ..q.clone() };
        let p2 = ItemPage::slice(all.clone(), &q2);
        assert_eq!(p2.items[0].id, all[2].id);
        let q3 = ListQuery { after: Some(all[3].id.clone()), ..q };
        let p3 = ItemPage::slice(all, &q3);
        assert_eq!((p3.items.len(), p3.has_more), (1, false));
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(ListQuery { limit: 0, ..ListQuery::default() }.limit(), 1);
        assert_eq!(ListQuery { limit: 1000, ..ListQuery::default() }.limit(), 100);
    }

    #[test]
    fn wire_items_keep_well_formed_ids() {
        let item = Item::new(ItemRole::Assistant, vec![Part::output_text("hi")]);
        let wire = item.to_wire();
        assert_eq!(Item::from_wire(&wire), item);
        let ResponseItem::Message(mut foreign) = wire else { panic!("a message") };
        foreign.id = "item_from_elsewhere".into();
        assert!(Item::from_wire(&foreign.into()).id.as_str().starts_with("msg_"));
    }

    #[test]
    fn function_items_round_trip_through_storage_json() {
        let call = ResponseItem::FunctionCall(FunctionCallItem::new("fc_x", "call_1", "f", "{}"));
        let item = Item::fresh(&call);
        assert!(item.id.as_str().starts_with("fc_"));
        assert_eq!(item.role_label(), "assistant");
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
        let out = Item::fresh(&ResponseItem::FunctionCallOutput(FunctionCallOutputItem::new("", "call_1", "18C")));
        assert!(out.id.as_str().starts_with("fco_"));
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), out);
        assert_eq!(Item::from_wire(&out.to_wire()), out, "stored ids are kept");
        // A message row as written before function calls existed reads unchanged.
        let old = r#"{"id":"msg_0190aaaabbbbccccddddeeeeffff0000","role":"user","content":[{"type":"input_text","text":"hi"}],"status":"completed"}"#;
        assert_eq!(serde_json::from_str::<Item>(old).unwrap().role(), Some(ItemRole::User));
    }
}
