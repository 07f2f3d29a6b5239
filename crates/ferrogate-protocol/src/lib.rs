//! Wire types of the APIs ferrogate speaks (OpenAI, Anthropic Messages, Ollama), SSE and NDJSON
//! framing, the error shapes, and the translations between the front protocols and the OpenAI
//! chat pivot the pipeline runs on.
//!
//! Invariant: serde only, no I/O — everything here is a pure function of bytes, so it can be
//! property-tested and fuzzed. Types are tolerant when reading upstream output (unknown fields
//! ignored, most fields optional) and exact when writing to clients.
//!
//! The pipeline speaks one language, OpenAI chat ([`openai::ChatCompletionRequest`],
//! [`openai::ChatCompletion`], [`openai::ChatCompletionChunk`]); the other front protocols are
//! translated at the edge, on the way in and on the way out:
//!
//! - [`anthropic`]: `MessagesRequest::to_chat_request`, `message_from_completion`, the
//!   `StreamTranslator` (chunks → Anthropic events, `sse_frame`), `ErrorResponse::from_openai`;
//! - [`ollama::front`]: `ChatRequest::to_chat_request`, `GenerateRequest::to_openai`,
//!   `chat_response` / `generate_response`, the `NdjsonTranslator` (chunks → NDJSON lines);
//! - [`ollama::wire`] is the other direction: what the Ollama *backend* sends upstream.
//!
//! Each module's documentation lists the calls in request order. Request conversions fail with
//! [`openai::InvalidParam`] naming the client's own field (→ 400); answers a front protocol can
//! not express fail with [`ResponseError`] (→ 502).

pub mod anthropic;
pub mod calendar;
pub mod error;
pub mod lines;
pub mod ollama;
pub mod openai;
pub mod sse;

pub use error::{ErrorBody, ErrorObject, ResponseError};
