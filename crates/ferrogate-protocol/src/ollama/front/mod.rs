//! Ollama's API as ferrogate serves it to Ollama clients, and its translation to and from the
//! OpenAI chat pivot.
//!
//! What the edge calls:
//!
//! - `POST /api/chat`: parse [`ChatRequest`] (a serde failure → 400 `{"error"}`); if
//!   [`ChatRequest::is_load_request`], answer [`ChatResponse::load`] (with
//!   [`is_unload`]`(keep_alive)`); else [`ChatRequest::to_chat_request`] (an `InvalidParam` →
//!   400). `stream` defaults to **true**: answer `application/x-ndjson` through one
//!   [`NdjsonTranslator`] (`Endpoint::Chat`): [`push`](NdjsonTranslator::push) per chunk,
//!   [`finish`](NdjsonTranslator::finish) at the end, [`fail`](NdjsonTranslator::fail) on a
//!   failure after the first byte, each [`Line::to_bytes`]. Non-streaming: [`chat_response`].
//! - `POST /api/generate`: [`GenerateRequest::to_openai`] gives a chat request, or a legacy
//!   completion for `raw: true` ([`GenerateTarget`]); stream with `Endpoint::Generate`
//!   ([`push`](NdjsonTranslator::push) or [`push_completion`](NdjsonTranslator::push_completion)),
//!   or answer [`generate_response`] / [`generate_from_completion`].
//! - `GET /api/tags` [`ListResponse`], `POST /api/show` [`ShowRequest`] → [`ShowResponse`],
//!   `GET /api/ps` [`PsResponse`], `GET /api/version` [`VersionResponse`], `POST /api/embed`
//!   [`EmbedRequest`] → [`EmbedResponse`] (and `/api/embeddings`, the legacy pair).
//! - Errors: [`ErrorResponse`](crate::ollama::ErrorResponse) `{"error": "…"}` with the gateway's
//!   status (Ollama uses 400, 404 for an unknown model, 500).
//!
//! `created_at` values come from [`now_rfc3339`]; durations from the edge's [`Timings`].

pub mod from_openai;
pub mod models;
pub mod request;
pub mod response;
pub mod to_openai;

pub use from_openai::{
    Endpoint, Line, NdjsonTranslator, chat_response, done_reason, generate_from_completion, generate_response,
};
pub use models::{
    EmbedInput, EmbedRequest, EmbedResponse, LegacyEmbeddingRequest, LegacyEmbeddingResponse, ListResponse,
    ListedModel, ModelDetails, PsResponse, RunningModel, ShowRequest, ShowResponse, VersionResponse,
};
pub use request::{ChatMessage, ChatRequest, GenerateRequest, RequestOptions, ToolCall, ToolCallFunction, is_unload};
pub use response::{ChatResponse, GenerateResponse, Stats, Timings, ndjson_line, now_rfc3339, rfc3339};
pub use to_openai::GenerateTarget;
