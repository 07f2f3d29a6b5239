//! `POST /v1/completions` (legacy text completion).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_protocol::openai::{Completion, CompletionChoice, CompletionRequest, unix_now};

use crate::error::ApiError;
use crate::handlers::decode;
use crate::pipeline;
use crate::state::AppState;
use crate::telemetry::RequestCx;

pub async fn handle(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = decode(body, st.body_limit)?;
    let plan = pipeline::plan_completion(&st, &cx, req)?;
    let plan = pipeline::admit(&st, plan).await?;
    if plan.stream {
        return crate::handlers::chat::respond(st, plan).await;
    }
    let (model, id) = (plan.model.clone(), plan.req.request_id.clone());
    let (c, usage, settle) = pipeline::execute_unary(&st, plan).await?;
    let body = Completion {
        id: format!("cmpl-{id}"),
        object: "text_completion".into(),
        created: unix_now(),
        model: model.clone(),
        choices: vec![CompletionChoice {
            index: 0,
            text: c.text,
            logprobs: None,
            finish_reason: Some(c.finish_reason),
        }],
        usage: Some(usage),
    };
    let mut res = Json(body).into_response();
    pipeline::decorate(&mut res, &model, &settle);
    Ok(res)
}
