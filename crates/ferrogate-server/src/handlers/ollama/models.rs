//! Ollama's model routes: `GET /api/tags` (the deployments and aliases the caller may use),
//! `POST /api/show`, `GET /api/ps` (the deployments whose model is loaded: an embedded model
//! that is unloaded or still loading is left out; an HTTP upstream's counts as loaded), `GET /api/version`, and `POST /api/embed` / `/api/embeddings`, which run the
//! embeddings path (`pipeline::embed`; ledger endpoints `api.embed`, `api.embeddings`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_core::{Deployment, ModelState};
use ferrogate_protocol::ollama::front::{
    EmbedInput, EmbedRequest, EmbedResponse, LegacyEmbeddingRequest, LegacyEmbeddingResponse, ListResponse,
    ListedModel, ModelDetails, PsResponse, RunningModel, ShowRequest, ShowResponse, VersionResponse, rfc3339,
};
use ferrogate_protocol::openai::embeddings::{EmbeddingInput, EmbeddingRequest};
use ferrogate_protocol::openai::unix_now;

use crate::error::ApiError;
use crate::handlers::{decode, decorate, resolve_model};
use crate::pipeline::embed::{self as pipeline_embed, Embedded};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;

/// The Ollama API version `/api/version` reports: the one whose endpoints and fields ferrogate
/// serves (clients gate features on it).
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// How far ahead `/api/ps` says a model stays loaded.
const LOADED_FOR: Duration = Duration::from_secs(24 * 3600);

/// The names (deployments and aliases) the caller may use, with their deployment.
fn visible<'a>(st: &'a AppState, cx: &'a RequestCx) -> impl Iterator<Item = (&'a Deployment, &'a String)> + 'a {
    st.registry
        .deployments()
        .iter()
        .flat_map(|d| std::iter::once(&d.name).chain(&d.aliases).map(move |n| (&**d, n)))
        .filter(|(d, n)| cx.caller.as_ref().is_none_or(|c| c.check_model(d, n).is_ok()))
}

/// `GET /api/tags`.
pub async fn tags(State(st): State<AppState>, Extension(cx): Extension<RequestCx>) -> Json<ListResponse> {
    let models = visible(&st, &cx)
        .map(|(d, n)| ListedModel { details: details(d), ..ListedModel::named(n, since_epoch(d.created)) })
        .collect();
    Json(ListResponse { models })
}

/// `GET /api/ps`.
pub async fn ps(State(st): State<AppState>, Extension(cx): Extension<RequestCx>) -> Json<PsResponse> {
    let until = rfc3339(Duration::from_secs(unix_now()) + LOADED_FOR);
    let models = visible(&st, &cx)
        .filter(|(d, _)| matches!(crate::handlers::model_state(d), None | Some(ModelState::Loaded)))
        .map(|(d, n)| RunningModel { details: details(d), ..RunningModel::named(n, until.clone()) })
        .collect();
    Json(PsResponse { models })
}

/// `POST /api/show`: what ferrogate knows of a model — its capabilities; the Modelfile, template
/// and GGUF metadata stay empty (they belong to the backend).
pub async fn show(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ShowResponse>, ApiError> {
    let req: ShowRequest = decode(body, st.settings.body_limit)?;
    let d = resolve_model(&st, &cx, &req.model)?;
    let caps = d.capabilities();
    let mut capabilities = vec!["completion".to_owned()];
    if caps.tools {
        capabilities.push("tools".to_owned());
    }
    if caps.images {
        capabilities.push("vision".to_owned());
    }
    Ok(Json(ShowResponse {
        details: details(d),
        capabilities,
        modified_at: Some(since_epoch(d.created)),
        ..ShowResponse::default()
    }))
}

/// `GET /api/version`.
pub async fn version() -> Json<VersionResponse> {
    Json(VersionResponse { version: OLLAMA_API_VERSION.to_owned() })
}

/// `POST /api/embed`: one vector per input. Ollama's `truncate` (cut over-long inputs) is not
/// offered: an input longer than the model takes is refused (400), as `truncate: false` asks.
pub async fn embed(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let req: EmbedRequest = decode(body, st.settings.body_limit)?;
    let input = match req.input {
        EmbedInput::One(s) => EmbeddingInput::One(s),
        EmbedInput::Many(v) => EmbeddingInput::Many(v),
    };
    let r = openai_request(req.model, input, req.dimensions);
    let Embedded { vectors, prompt_tokens, shown, settle } =
        pipeline_embed::run(&st, &cx, r, Endpoint::OllamaEmbed).await?;
    let body = EmbedResponse {
        model: shown.to_string(),
        embeddings: vectors,
        total_duration: Some(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)),
        load_duration: Some(0),
        prompt_eval_count: Some(prompt_tokens),
    };
    let mut res = Json(body).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}

/// `POST /api/embeddings` (the older route): one prompt, one vector.
pub async fn embeddings(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: LegacyEmbeddingRequest = decode(body, st.settings.body_limit)?;
    let r = openai_request(req.model, EmbeddingInput::One(req.prompt), None);
    let Embedded { vectors, shown, settle, .. } = pipeline_embed::run(&st, &cx, r, Endpoint::OllamaEmbeddings).await?;
    let embedding = vectors.into_iter().next().unwrap_or_default();
    let mut res = Json(LegacyEmbeddingResponse { embedding }).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}

fn openai_request(model: String, input: EmbeddingInput, dimensions: Option<u32>) -> EmbeddingRequest {
    EmbeddingRequest { model, input, encoding_format: None, dimensions, user: None, extra: Default::default() }
}

/// A deployment's details: unknown at the gateway (format, family, size and quantization belong
/// to the backend's model), so empty rather than guessed.
fn details(_: &Deployment) -> ModelDetails {
    ModelDetails::default()
}

fn since_epoch(secs: u64) -> String {
    rfc3339(Duration::from_secs(secs))
}
