//! The Ollama API, so Ollama clients can point at ferrogate: `POST /api/chat` and
//! `POST /api/generate` (NDJSON streams by default, `stream: false` whole; `raw: true` generate
//! runs as a text completion) through the one pipeline (ledger endpoints `api.chat` and
//! `api.generate`), and the model routes in [`models`]. Errors take Ollama's `{"error": "…"}`
//! shape in `error::front`. `keep_alive` is accepted and not applied per request (an embedded
//! model's `keep_alive` is its backend's setting, docs/SCALING.md), so a load or unload request (no
//! messages, no prompt) only checks the model exists.

pub mod models;

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_protocol::ollama::front::{
    self, ChatRequest, ChatResponse, GenerateRequest, GenerateResponse, GenerateTarget, is_unload, now_rfc3339,
};

use crate::error::ApiError;
use crate::handlers::encode::chat_completion;
use crate::handlers::{decode, decorate, resolve_model};
use crate::pipeline::{self, Answer, Ask, Body};
use crate::request::{Endpoint, RequestCx};
use crate::sse::ndjson::{NdjsonFrames, timings};
use crate::state::AppState;

/// `POST /api/chat`.
pub async fn chat(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = decode(body, st.settings.body_limit)?;
    if req.is_load_request() {
        resolve_model(&st, &cx, &req.model)?;
        let unload = is_unload(req.keep_alive.as_ref());
        return Ok(Json(ChatResponse::load(&req.model, now_rfc3339(), unload)).into_response());
    }
    let chat = req.to_chat_request()?;
    let answer = pipeline::run(&st, &cx, Ask::Chat(chat, Endpoint::OllamaChat)).await?;
    respond(st, answer, front::Endpoint::Chat)
}

/// `POST /api/generate`.
pub async fn generate(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: GenerateRequest = decode(body, st.settings.body_limit)?;
    if req.is_load_request() {
        resolve_model(&st, &cx, &req.model)?;
        let unload = is_unload(req.keep_alive.as_ref());
        return Ok(Json(GenerateResponse::load(&req.model, now_rfc3339(), unload)).into_response());
    }
    let ask = match req.to_openai()? {
        GenerateTarget::Chat(chat) => Ask::Chat(chat, Endpoint::OllamaGenerate),
        GenerateTarget::Completion(raw) => Ask::Completion(raw, Endpoint::OllamaGenerate),
    };
    let answer = pipeline::run(&st, &cx, ask).await?;
    respond(st, answer, front::Endpoint::Generate)
}

/// Encodes an answer as an NDJSON stream or one whole Ollama body.
fn respond(st: AppState, answer: Answer, endpoint: front::Endpoint) -> Result<Response, ApiError> {
    let Answer { endpoint: e, shown, include_usage, body } = answer;
    let (completion, usage, settle) = match body {
        Body::Whole { completion, usage, settle } => (completion, usage, settle),
        stream @ Body::Stream { .. } => {
            let answer = Answer { endpoint: e, shown, include_usage, body: stream };
            return Ok(crate::sse::respond_with(st, answer, |s, shown| NdjsonFrames::new(endpoint, shown, s.started)));
        }
    };
    let whole = chat_completion(&settle.request_id, &shown, completion, usage);
    let t = timings(settle.started, Instant::now());
    let mut res = match endpoint {
        front::Endpoint::Chat => Json(front::chat_response(&whole, now_rfc3339(), &t)?).into_response(),
        front::Endpoint::Generate => Json(front::generate_response(&whole, now_rfc3339(), &t)?).into_response(),
    };
    decorate(&mut res, &shown, &settle);
    Ok(res)
}
