//! `POST /v1/completions` (legacy text completion).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_protocol::openai::{Completion, CompletionChoice, CompletionRequest, unix_now};

use crate::error::ApiError;
use crate::handlers::{decode, decorate};
use crate::pipeline::{self, Answer, Ask, Body};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;

pub async fn handle(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = decode(body, st.settings.body_limit)?;
    let answer = pipeline::run(&st, &cx, Ask::Completion(req, Endpoint::Completion)).await?;
    let Answer { endpoint, shown, include_usage, body } = answer;
    let (c, usage, settle) = match body {
        Body::Whole { completion, usage, settle } => (completion, usage, settle),
        stream @ Body::Stream { .. } => {
            return Ok(crate::sse::respond(st, Answer { endpoint, shown, include_usage, body: stream }));
        }
    };
    let body = Completion {
        id: format!("cmpl-{}", settle.request_id),
        object: "text_completion".into(),
        created: unix_now(),
        model: shown.to_string(),
        choices: vec![CompletionChoice {
            index: 0,
            text: c.text,
            logprobs: None,
            finish_reason: Some(c.finish_reason),
        }],
        usage: Some(usage),
    };
    let mut res = Json(body).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}
