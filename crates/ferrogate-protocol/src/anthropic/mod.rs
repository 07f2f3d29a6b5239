//! Anthropic's Messages API as ferrogate serves it (`POST /v1/messages`,
//! `POST /v1/messages/count_tokens`), translated to and from the OpenAI chat pivot.
//!
//! What the edge calls, in request order:
//!
//! 1. parse the body as [`MessagesRequest`] (or [`CountTokensRequest`]); a serde failure is a
//!    400 `invalid_request_error`;
//! 2. [`MessagesRequest::to_chat_request`]: validates with Anthropic's field names and gives the
//!    [`ChatCompletionRequest`](crate::openai::ChatCompletionRequest) the pipeline runs (an
//!    [`InvalidParam`](crate::openai::InvalidParam) → 400);
//! 3. non-streaming: [`message_from_completion`] on the backend's answer (a [`ResponseError`]
//!    → 502 `api_error`);
//! 4. streaming: one [`StreamTranslator`] per request — [`StreamTranslator::start`] when the
//!    response begins, [`StreamTranslator::push`] per upstream chunk,
//!    [`StreamTranslator::finish`] at the upstream's end, [`StreamTranslator::fail`] on an error
//!    after the first byte; each event written with [`sse_frame`] (`text/event-stream`). A
//!    keep-alive is [`StreamEvent::Ping`];
//! 5. errors: [`ErrorResponse::from_openai`] on the status and OpenAI body the gateway's
//!    `ApiError` renders; the HTTP status stays the gateway's (Anthropic's type follows it).
//!
//! Absent on purpose: extended thinking, server tools, documents, citations and prompt-cache
//! control (hints accepted and ignored) — refused with an error naming the field.

pub mod content;
pub mod error;
pub mod events;
pub mod from_openai;
mod messages;
pub mod request;
pub mod response;
pub mod stream;
pub mod to_openai;

pub use content::{ContentBlock, ImageSource, InputBlock, OtherBlock, ToolResultContent};
pub use error::{ErrorObject, ErrorResponse, ErrorType};
pub use events::{BlockDelta, MessageDeltaBody, StreamEvent, sse_frame};
pub use from_openai::{ResponseError, message_from_completion, message_id, stop_reason, usage};
pub use request::{
    CountTokensRequest, CountTokensResponse, InputContent, InputMessage, InputRole, MessagesRequest, Metadata,
    SystemPrompt, Thinking, Tool, ToolChoice,
};
pub use response::{DeltaUsage, Message, StopReason, Usage};
pub use stream::StreamTranslator;
