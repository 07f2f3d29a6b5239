//! `POST /v1/chat/completions`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use ferrogate_protocol::openai::ChatCompletionRequest;

use crate::error::ApiError;
use crate::handlers::decode;
use crate::handlers::encode::respond;
use crate::pipeline::{self, Ask};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;

pub async fn handle(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatCompletionRequest = decode(body, st.settings.body_limit)?;
    let answer = pipeline::run(&st, &cx, Ask::Chat(req, Endpoint::Chat)).await?;
    Ok(respond(st, answer))
}
