//! `POST /v1/chat/completions`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use ferrogate_core::Completion;
use ferrogate_protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionRequest, Role, Usage, unix_now,
};

use crate::error::ApiError;
use crate::handlers::decode;
use crate::pipeline::{self, Endpoint, Plan};
use crate::state::AppState;
use crate::telemetry::RequestCx;

pub async fn handle(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatCompletionRequest = decode(body, st.body_limit)?;
    let plan = pipeline::plan_chat(&st, &cx, req, Endpoint::Chat)?;
    let plan = pipeline::admit(&st, plan).await?;
    respond(st, plan).await
}

/// Shared by every chat-shaped endpoint.
pub async fn respond(st: AppState, plan: Plan) -> Result<Response, ApiError> {
    if plan.stream {
        return crate::sse::respond(st, plan).await;
    }
    let (endpoint, model, id) = (plan.endpoint, plan.model.clone(), plan.req.request_id.clone());
    let (completion, usage, settle) = pipeline::execute_unary(&st, plan).await?;
    let mut res = match endpoint {
        Endpoint::Generate => crate::handlers::simple::generate_body(&id, &model, completion, usage),
        _ => axum::Json(chat_completion(&id, &model, completion, usage)).into_response(),
    };
    pipeline::decorate(&mut res, &model, &settle);
    Ok(res)
}

pub fn chat_completion(request_id: &str, model: &str, c: Completion, usage: Usage) -> ChatCompletion {
    let content = if c.text.is_empty() && c.tool_calls.is_some() { None } else { Some(c.text) };
    ChatCompletion {
        id: format!("chatcmpl-{request_id}"),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage { role: Role::Assistant, content, tool_calls: c.tool_calls, refusal: None },
            logprobs: None,
            finish_reason: Some(c.finish_reason),
        }],
        usage,
        system_fingerprint: None,
    }
}
