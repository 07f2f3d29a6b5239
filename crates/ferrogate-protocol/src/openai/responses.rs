//! The OpenAI Responses API (`/v1/responses`): the request, the response object, the items it
//! reads and writes, the typed stream events, and the pure conversions to and from the chat
//! types, which stay the gateway's internal pivot (every backend speaks chat).
//!
//! Invariant: text and function calls. Items are `message` items whose parts are `input_text`,
//! `output_text` or `refusal`, `function_call` and `function_call_output` items; anything else is
//! refused when the request is read, never dropped silently.

pub mod call;
pub mod convert;
pub mod item;
pub mod object;
pub mod request;
pub mod stream;

pub use call::{FunctionCallItem, FunctionCallOutputItem, ResponseItem, call_item_id};
pub use convert::{ChatOutput, chat_messages, chat_output, chat_request};
pub use item::{ItemRole, ItemStatus, ListPage, MessageItem, Metadata, Part, check_metadata};
pub use object::{
    IncompleteDetails, InputTokensDetails, OutputTokensDetails, Response, ResponseDeleted, ResponseError,
    ResponseStatus, ResponseUsage,
};
pub use request::{
    ConversationRef, InputContent, InputItem, InputMessage, ResponseInput, ResponsesRequest, Truncation,
};
pub use stream::{ResponseStreamBuilder, ResponseStreamEvent};
