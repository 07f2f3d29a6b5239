//! Stateful conversations and stored responses (the OpenAI Responses and Conversations APIs):
//! ids, ownership, the stored shapes, the [`ConversationStore`] trait that `ferrogate-store`
//! implements for SQLite and PostgreSQL, retention settings, and the context policy.
//!
//! How the edge uses it, per `POST /v1/responses`:
//! 1. [`plan_turn`]: the response id, the output item id, the input items, the skeleton.
//! 2. history: `conversation` → [`ConversationStore::history`] (keep the version);
//!    `previous_response_id` → [`ConversationStore::response_chain`]; else none.
//! 3. [`fit_context`] with the deployment's context length → the chat messages to send
//!    (`ContextLengthExceeded` → 400 `context_length_exceeded`); `wire::chat_request` makes the
//!    chat request of them.
//! 4. run it; `wire::chat_output` (or `wire::ResponseStreamBuilder` for a stream) fills the
//!    skeleton.
//! 5. settle: [`settle_turn`] says what to persist: [`ConversationStore::append_turn`] (input,
//!    output and, when `store`, the response, in one transaction; `Conflict` → 409) or
//!    [`ConversationStore::store_response`], or nothing.
//!
//! Invariant: no database types; everything is scoped by [`Owner`] (see [`store`]).

#![warn(missing_docs)]

pub mod context;
pub mod error;
pub mod ids;
pub mod model;
pub mod retention;
pub mod store;
pub mod turn;

pub use context::{ContextLengthExceeded, ContextRequest, Fitted, fit_context};
pub use error::ConversationError;
/// The Responses API wire types items and responses are made of.
pub use ferrogate_protocol::openai::responses as wire;
/// The metadata map of conversations and responses (the wire type).
pub use ferrogate_protocol::openai::responses::Metadata;
pub use ids::{ConversationId, ItemId, ResponseId};
pub use model::{
    Conversation, Item, ItemBody, ItemPage, ListQuery, NewConversation, Order, Owner, Purged, StoredResponse, Turn,
};
pub use retention::Retention;
pub use store::{ConvResult, ConversationStore};
pub use turn::{Continues, Persist, TurnPlan, plan_turn, settle_turn};
