//! OpenAI's Responses API: `POST /v1/responses` (whole and streamed), `GET` and `DELETE
//! /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`; `background: true` is queued as a
//! job (`handlers::background`) whose worker runs the same [`turn`].
//!
//! A turn, in order (see `ferrogate_core::conversations`): plan it (ids, input items, the
//! `in_progress` skeleton); read its context — the conversation's history (keeping its version)
//! or the `previous_response_id` chain; fit it to the context budget (`truncation`); run the chat
//! request it becomes through the one pipeline (endpoint `responses`: limits, budgets, ledger,
//! metrics and traces as every other front); fill the response; persist the turn — appended to
//! the conversation in one transaction (409 `conflict` when another turn landed first), or the
//! response stored alone — and only then answer (a stream's terminal event waits for it too).

use axum::Extension;
use axum::Json;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use ferrogate_core::conversations::wire::{
    ResponseDeleted, ResponseError, ResponseItem, ResponseStatus, ResponseStreamEvent, ResponsesRequest, chat_output,
    chat_request,
};
use ferrogate_core::conversations::{
    ContextRequest, Continues, ConversationError, ConversationId, Item, Owner, Persist, ResponseId, TurnPlan,
    fit_context, plan_turn, settle_turn,
};
use ferrogate_core::tokens;
use ferrogate_protocol::openai::ChatMessage;
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::error::{ApiError, ErrorCode};
use crate::handlers::background;
use crate::handlers::conversations::{ListParams, owner, service};
use crate::handlers::encode::chat_completion;
use crate::handlers::{decode, decorate};
use crate::pipeline::{self, Answer, Ask, Body};
use crate::request::{Endpoint, RequestCx};
use crate::sse::responses::{Finished, ResponsesFrames, event_frame};
use crate::state::{AppState, ConvService};

/// Most stored responses a `previous_response_id` chain follows.
const MAX_CHAIN: usize = 256;

/// `POST /v1/responses`.
pub async fn create(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    service(&st)?;
    let req: ResponsesRequest = decode(body, st.settings.body_limit)?;
    req.validate()?;
    if req.background == Some(true) {
        return background::enqueue(&st, &cx, req).await;
    }
    turn(&st, &cx, &req, None).await
}

/// One turn of `req` as `cx`'s caller, answered whole or streamed; `id` names the response (a
/// background response's, made when it was queued) instead of a fresh one.
pub(crate) async fn turn(
    st: &AppState,
    cx: &RequestCx,
    req: &ResponsesRequest,
    id: Option<ResponseId>,
) -> Result<Response, ApiError> {
    let conv = service(st)?;
    let owner = owner(cx);
    let now_ms = conv.clock.now_ms();
    let mut plan = plan_turn(req, u64::try_from(now_ms / 1000).unwrap_or(0));
    if let Some(id) = id {
        plan.skeleton.id = id.as_str().to_owned();
        plan.response_id = id;
    }
    let (continues, history) = context_of(conv, &owner, req).await?;
    let history: Vec<ResponseItem> = history.iter().map(Item::to_wire).collect();
    let input = plan.input_wire();
    let budget = req.max_output_tokens.unwrap_or(conv.settings.default_output_tokens);
    let fit = ContextRequest {
        instructions: req.instructions.as_deref(),
        history: &history,
        input: &input,
        context_length: conv.settings.context_tokens,
        max_output_tokens: budget,
        truncation: req.truncation(),
    };
    let fitted = fit_context(&fit, estimate).map_err(|e| ApiError {
        param: Some("input".into()),
        ..ApiError::new(ErrorCode::ContextLengthExceeded, e.to_string())
    })?;
    let chat = chat_request(req, fitted.messages);
    let answer = pipeline::run(st, cx, Ask::Chat(chat, Endpoint::Responses)).await?;
    let turn = TurnCx { owner, continues, store: req.stores(), plan };
    match answer.body {
        Body::Whole { .. } => whole(st, turn, answer).await,
        Body::Stream { .. } => Ok(stream(st.clone(), turn, answer)),
    }
}

/// The gateway's estimate of one message's tokens: its text, its tool calls' JSON, and 4 for
/// the template around it.
fn estimate(m: &ChatMessage) -> u32 {
    let calls = m.tool_calls.as_ref().map_or(0, |c| tokens::estimate(&serde_json::Value::from(c.clone()).to_string()));
    tokens::estimate(&m.text()).saturating_add(calls).saturating_add(4)
}

/// What a turn carries from its start to its persistence.
struct TurnCx {
    owner: Owner,
    continues: Continues,
    store: bool,
    plan: TurnPlan,
}

/// The turn's earlier items: the conversation's history (its version kept for the append), or
/// the chain of `previous_response_id`, or nothing.
async fn context_of(
    conv: &ConvService,
    owner: &Owner,
    req: &ResponsesRequest,
) -> Result<(Continues, Vec<Item>), ApiError> {
    if let Some(c) = &req.conversation {
        let id = ConversationId::parse(c.id()).ok_or_else(|| ApiError::not_found("conversation", c.id()))?;
        let (found, items) = conv.store.history(owner, &id, conv.settings.max_history_items).await?;
        return Ok((Continues::Conversation(id, found.version), items));
    }
    if let Some(p) = &req.previous_response_id {
        let id = ResponseId::parse(p).ok_or_else(|| ApiError::not_found("response", p))?;
        let items = conv.store.response_chain(owner, &id, MAX_CHAIN).await?;
        return Ok((Continues::Response(id), items));
    }
    Ok((Continues::Nothing, Vec::new()))
}

async fn whole(st: &AppState, turn: TurnCx, answer: Answer) -> Result<Response, ApiError> {
    let conv = service(st)?;
    let Answer { shown, body, .. } = answer;
    let Body::Whole { completion, usage, settle } = body else {
        return Err(ApiError::internal("a stream was sent to the whole encoder"));
    };
    let chat = chat_completion(&settle.request_id, &shown, completion, usage);
    let out = chat_output(&chat, turn.plan.output_item_id.as_str());
    let mut response = turn.plan.skeleton.clone();
    response.output = out.items;
    response.status = out.status;
    response.incomplete_details = out.incomplete_details;
    response.usage = Some(out.usage);
    persist(conv, turn, response.clone()).await?;
    let mut res = Json(response).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}

/// Stores what a finished turn needs (see `settle_turn`): the turn appended to its conversation
/// in one transaction, or the response alone, or nothing.
async fn persist(
    conv: &ConvService,
    turn: TurnCx,
    response: ferrogate_core::conversations::wire::Response,
) -> Result<(), ApiError> {
    let now_ms = conv.clock.now_ms();
    let TurnCx { owner, continues, store, plan } = turn;
    match settle_turn(plan, response, &owner, continues, store, &conv.retention, now_ms) {
        Persist::Nothing => Ok(()),
        Persist::Response(stored, input) => Ok(conv.store.store_response(*stored, input).await?),
        Persist::Turn(t) => conv.store.append_turn(&owner, *t).await.map(|_| ()).map_err(ApiError::from),
    }
}

/// Streams the answer; the terminal event is sent once the turn is persisted.
fn stream(st: AppState, turn: TurnCx, answer: Answer) -> Response {
    let (tx, rx) = oneshot::channel();
    let skeleton = turn.plan.skeleton.clone();
    let item_id = turn.plan.output_item_id.as_str().to_owned();
    let res = crate::sse::respond_with(st.clone(), answer, move |_, _| ResponsesFrames::new(skeleton, &item_id, tx));
    let (parts, body) = res.into_parts();
    let tail = futures::stream::once(finish(st, turn, rx)).filter_map(|f| async move { f });
    let body = body.into_data_stream().chain(tail.map(Ok));
    Response::from_parts(parts, HttpBody::from_stream(body))
}

/// After the pump ended: persists the turn, then sends the terminal event (or, when the turn
/// could not be stored, `response.failed` and `error`). A client that left before the end gets
/// nothing persisted: the turn did not complete.
async fn finish(st: AppState, turn: TurnCx, rx: oneshot::Receiver<Finished>) -> Option<Bytes> {
    let conv = service(&st).ok()?;
    match rx.await.ok()? {
        Finished::Failed { response } => {
            if let Err(e) = persist(conv, turn, *response).await {
                tracing::warn!(error = %e.message, "a failed response could not be stored");
            }
            None
        }
        Finished::Done { last, response } => match persist(conv, turn, (*response).clone()).await {
            Ok(()) => Some(event_frame(&last)),
            Err(e) => Some(refused(&last, *response, &e)),
        },
    }
}

/// The frames that end a stream whose turn could not be stored: `response.failed` then `error`,
/// numbered after the events already sent.
fn refused(
    last: &ResponseStreamEvent,
    mut response: ferrogate_core::conversations::wire::Response,
    e: &ApiError,
) -> Bytes {
    let seq = serde_json::to_value(last).ok().and_then(|v| v["sequence_number"].as_u64()).unwrap_or(0);
    let code = e.code.as_str().to_owned();
    response.status = ResponseStatus::Failed;
    response.error = Some(ResponseError { code: code.clone(), message: e.message.clone() });
    let failed = ResponseStreamEvent::Failed { response: Box::new(response), sequence_number: seq };
    let error = ResponseStreamEvent::Error {
        code: Some(code),
        message: e.message.clone(),
        param: None,
        sequence_number: seq + 1,
    };
    let mut out = event_frame(&failed).to_vec();
    out.extend_from_slice(&event_frame(&error));
    Bytes::from(out)
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let rid = response_id(&id)?;
    let owner = owner(&cx);
    match conv.store.get_response(&owner, &rid).await {
        Ok(stored) => Ok(Json(stored.body).into_response()),
        // Not stored yet: a background response still queued, running, or ended without one.
        Err(ConversationError::NotFound { what, id: missing }) => match background::pending(&st, &owner, &id).await? {
            Some(response) => Ok(Json(response).into_response()),
            None => Err(ApiError::not_found(what, &missing)),
        },
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let rid = response_id(&id)?;
    conv.store.delete_response(&owner(&cx), &rid).await?;
    Ok(Json(ResponseDeleted::new(id)).into_response())
}

/// `GET /v1/responses/{id}/input_items`.
pub async fn input_items(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let conv = service(&st)?;
    let rid = response_id(&id)?;
    let page = conv.store.response_input_page(&owner(&cx), &rid, &params.query()?).await?;
    Ok(Json(page.to_wire()).into_response())
}

fn response_id(id: &str) -> Result<ResponseId, ApiError> {
    ResponseId::parse(id).ok_or_else(|| ApiError::not_found("response", id))
}
