//! Stateful conversations and stored responses (the OpenAI Responses and Conversations APIs):
//! ids, ownership, the stored shapes, the [`ConversationStore`] trait that `ferrogate-store`
//! implements for SQLite and PostgreSQL, retention settings, and the context policy.
//!
//! How the edge uses it, per `POST /v1/responses`:
//! 1. history: `conversation` → [`ConversationStore::history`] (keep the version);
//!    `previous_response_id` → [`ConversationStore::response_chain`]; else none.
//! 2. [`fit_context`] with the deployment's context length → the chat messages to send
//!    (`ContextLengthExceeded` → 400 `context_length_exceeded`).
//! 3. run the chat request; build the response with the protocol's converters.
//! 4. settle: with a conversation, [`ConversationStore::append_turn`] (input, output and, when
//!    `store`, the response, in one transaction; `Conflict` → 409); without one and `store`,
//!    [`ConversationStore::store_response`].
//!
//! Invariant: no database types; everything is scoped by [`Owner`] (see [`store`]).

#![warn(missing_docs)]

pub mod context;
pub mod error;
pub mod ids;
pub mod model;
pub mod retention;
pub mod store;

pub use context::{ContextLengthExceeded, ContextRequest, Fitted, fit_context};
pub use error::ConversationError;
/// The Responses API wire types items and responses are made of.
pub use ferrogate_protocol::openai::responses as wire;
/// The metadata map of conversations and responses (the wire type).
pub use ferrogate_protocol::openai::responses::Metadata;
pub use ids::{ConversationId, ItemId, ResponseId};
pub use model::{Conversation, Item, ItemPage, ListQuery, NewConversation, Order, Owner, Purged, StoredResponse, Turn};
pub use retention::Retention;
pub use store::{ConvResult, ConversationStore};
