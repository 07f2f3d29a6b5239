//! Anthropic's Messages API: `POST /v1/messages` (whole and streamed) and
//! `POST /v1/messages/count_tokens`. The request is translated to the OpenAI chat pivot by the
//! protocol crate and runs the one pipeline (same limits, budgets, ledger — endpoint
//! `messages` —, metrics and traces as OpenAI's); the answer is translated back. Errors take
//! Anthropic's shape in `error::front`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_core::tokens;
use ferrogate_protocol::anthropic::{
    CountTokensRequest, CountTokensResponse, MessagesRequest, message_from_completion,
};

use crate::error::ApiError;
use crate::handlers::encode::chat_completion;
use crate::handlers::{decode, decorate, resolve_model};
use crate::pipeline::{self, Answer, Ask, Body};
use crate::request::{Endpoint, RequestCx};
use crate::sse::anthropic::AnthropicFrames;
use crate::state::AppState;

/// `POST /v1/messages`.
pub async fn messages(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: MessagesRequest = decode(body, st.settings.body_limit)?;
    let chat = req.to_chat_request()?;
    let answer = pipeline::run(&st, &cx, Ask::Chat(chat, Endpoint::Messages)).await?;
    respond(st, answer)
}

fn respond(st: AppState, answer: Answer) -> Result<Response, ApiError> {
    let Answer { endpoint, shown, include_usage, body } = answer;
    let (completion, usage, settle) = match body {
        Body::Whole { completion, usage, settle } => (completion, usage, settle),
        stream @ Body::Stream { .. } => {
            let answer = Answer { endpoint, shown, include_usage, body: stream };
            return Ok(crate::sse::respond_with(st, answer, |s, shown| {
                AnthropicFrames::new(&s.request_id, shown, s.prompt_estimate)
            }));
        }
    };
    let whole = chat_completion(&settle.request_id, &shown, completion, usage);
    let message = message_from_completion(&whole, None)?;
    let mut res = Json(message).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}

/// `POST /v1/messages/count_tokens`: the gateway's estimate of the prompt's tokens (the same
/// count budgets and rate limits reserve before dispatch). The model must exist for the caller.
pub async fn count_tokens(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CountTokensResponse>, ApiError> {
    let req: CountTokensRequest = decode(body, st.settings.body_limit)?;
    let chat = req.to_chat_request()?;
    resolve_model(&st, &cx, &chat.model)?;
    let tools = chat.tools.as_ref().map_or(0, |t| tokens::estimate(&t.to_string()));
    Ok(Json(CountTokensResponse { input_tokens: tokens::estimate_messages(&chat.messages) + tools }))
}
