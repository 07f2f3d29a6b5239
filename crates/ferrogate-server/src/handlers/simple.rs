//! The seeds' simple endpoints, thin aliases of the chat pipeline:
//! `POST /generate` (`{"prompt": …}` in, text out) and `POST /stream` (SSE of text, ends `[DONE]`).
//! `model` is optional and defaults to the deployment named or aliased `default` (else the first).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use ferrogate_core::Deployment;
use ferrogate_protocol::openai::{ChatCompletionRequest, ChatMessage, Role, Stop};
use serde::Deserialize;
use std::sync::Arc;

use crate::error::ApiError;
use crate::handlers::decode;
use crate::pipeline::{self, Ask};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRequest {
    pub prompt: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
}

pub async fn generate(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(st, cx, body, Endpoint::Generate).await
}

pub async fn stream(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(st, cx, body, Endpoint::Stream).await
}

async fn run(
    st: AppState,
    cx: RequestCx,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let r: SimpleRequest = decode(body, st.settings.body_limit)?;
    let model = r.model.or_else(|| default_model(&st)).unwrap_or_default();
    let mut messages = Vec::new();
    if let Some(s) = r.system {
        messages.push(ChatMessage::new(Role::System, s));
    }
    messages.push(ChatMessage::new(Role::User, r.prompt));
    let req = ChatCompletionRequest {
        model,
        messages,
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        seed: r.seed,
        stop: r.stop,
        stream: Some(endpoint == Endpoint::Stream),
        ..ChatCompletionRequest::default()
    };
    let answer = pipeline::run(&st, &cx, Ask::Chat(req, endpoint)).await?;
    Ok(crate::handlers::encode::respond(st, answer))
}

/// The `default` alias, else the first deployment that generates text (never an embedding model).
fn default_model(st: &AppState) -> Option<String> {
    let generates = |d: &&Arc<Deployment>| d.capabilities().text_completion || d.capabilities().chat;
    let first = || st.registry.deployments().iter().find(generates);
    st.registry.resolve("default").or_else(first).map(|d| d.name.clone())
}
