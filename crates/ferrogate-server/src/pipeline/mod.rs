//! The request path after the HTTP edge, in one function ([`run`]) that reads in request order:
//! plan (pure) → admit → the response cache (a hit answers here) → dispatch (queue, balanced
//! pick, the call bounded in time, retries and fallbacks before the first byte) → the answer the
//! handler encodes → settle (when the answer's `Settle` drops, exactly once).
//!
//! Invariants: no effect before `admit`; every request that reached a backend holds a `Settle`
//! from its first granted queue slot, so it is settled exactly once — on success, error or
//! client disconnect; anything refused earlier is recorded by the access layer.

pub mod admit;
pub mod cache;
pub mod embed;
pub mod plan;
pub mod semantic;

use std::sync::Arc;

use ferrogate_core::{Backend, BackendError, Completion, EventStream, StreamEvent, TimeoutKind, tokens};
use ferrogate_protocol::openai::{ChatCompletionRequest, CompletionRequest, Usage};
use futures::StreamExt;

use crate::error::ApiError;
use crate::request::names::RequestedModel;
use crate::request::{Endpoint, RequestCx};
use crate::resilience::dispatch::{self, Dispatched, Lease};
use crate::settle::{CacheFill, Settle};
use crate::state::AppState;

/// A decoded inference request.
pub enum Ask {
    /// A chat-shaped request, from `/v1/chat/completions`, `/generate`, `/stream`, or one
    /// translated from Anthropic's `/v1/messages` or Ollama's `/api/chat` and `/api/generate`.
    Chat(ChatCompletionRequest, Endpoint),
    /// A legacy text completion, from `/v1/completions` or Ollama's raw `/api/generate`.
    Completion(CompletionRequest, Endpoint),
}

/// What the handler encodes.
pub struct Answer {
    pub endpoint: Endpoint,
    /// The model name responses carry.
    pub shown: RequestedModel,
    /// The client asked for a final usage chunk (streams).
    pub include_usage: bool,
    pub body: Body,
}

pub enum Body {
    /// A whole answer; its `Settle` is finished and records the request when dropped.
    Whole { completion: Completion, usage: Usage, settle: Settle },
    /// A stream that produced its first event; the lease holds its slots while it runs.
    Stream { first: StreamEvent, events: EventStream, lease: Lease, settle: Settle },
}

impl Answer {
    pub fn settle(&self) -> &Settle {
        match &self.body {
            Body::Whole { settle, .. } | Body::Stream { settle, .. } => settle,
        }
    }
}

/// The request path, in order.
pub async fn run(st: &AppState, cx: &RequestCx, ask: Ask) -> Result<Answer, ApiError> {
    // The decoded request, kept for the semantic cache only when one is configured (its scope
    // and the text to embed are read from the client's messages).
    let for_semantic = match &ask {
        Ask::Chat(r, _) if st.semantic.is_some() => Some(r.clone()),
        _ => None,
    };
    // 1 plan (pure): validate, route, scopes and caps, capabilities; the cache key, if cacheable
    let mut plan = match ask {
        Ask::Chat(r, endpoint) => plan::chat(st, cx, r, endpoint)?,
        Ask::Completion(r, endpoint) => plan::completion(st, cx, r, endpoint)?,
    };
    let keyed = cache::plan(st, cx, &plan);
    // 2 admit: guardrails, budgets and concurrency, rate limits
    let held = admit::admit(st, &mut plan).await?;
    // 3 the response cache: a hit answers here
    let step = cache::lookup(st, cx, &plan, keyed).await;
    // 3b the semantic cache (after an exact miss): a paraphrase's answer answers here
    let sem = match &step {
        cache::Step::Hit(_) => semantic::Semantic::Off,
        _ => semantic::lookup(st, cx, &plan, for_semantic.as_ref()).await,
    };
    let hit = match (&step, &sem) {
        (cache::Step::Hit(entry), _) => Some((entry, "hit", None)),
        (_, semantic::Semantic::Hit(h)) => Some((&h.entry, "semantic-hit", Some(h.similarity))),
        _ => None,
    };
    if let Some((entry, label, similarity)) = hit {
        let mut settle = Settle::new(st, &mut plan, held);
        (settle.cache, settle.similarity) = (Some(label), similarity);
        settle.finish(entry.finish_reason, entry.usage);
        let body = if plan.stream {
            let (first, events) = cache::events(entry);
            Body::Stream { first, events, lease: Lease::none(), settle }
        } else {
            Body::Whole { completion: cache::completion(entry), usage: entry.usage, settle }
        };
        return Ok(Answer { endpoint: plan.endpoint, shown: plan.shown, include_usage: plan.include_usage, body });
    }
    // 4 dispatch: queue → pick → call → retry → fallback, before the first byte only
    let miss = match (&step, &sem) {
        (cache::Step::Miss { .. }, _) | (_, semantic::Semantic::Miss { .. }) => Some("miss"),
        _ => None,
    };
    let body = if plan.stream {
        let Dispatched { lease, value: (first, events), mut settle } =
            dispatch::run(st, &mut plan, held, open_stream).await?;
        settle.cache = miss;
        let exact = match step {
            cache::Step::Miss { key, ttl } => Some((key, ttl)),
            _ => None,
        };
        if exact.is_some() || matches!(sem, semantic::Semantic::Miss { .. }) {
            let model = plan.shown.to_string();
            settle.fill = Some(CacheFill { exact, semantic: sem, model, text: String::new() });
        }
        Body::Stream { first, events, lease, settle }
    } else {
        let limit = st.settings.request_timeout;
        let call = move |b, req| whole(b, req, limit);
        let Dispatched { mut lease, value: completion, mut settle } = dispatch::run(st, &mut plan, held, call).await?;
        lease.succeeded();
        settle.note_text(&completion.text);
        let estimate = || Usage::new(plan.prompt_estimate, tokens::estimate(&completion.text), None);
        let usage = completion.usage.unwrap_or_else(estimate);
        settle.finish(completion.finish_reason, usage);
        settle.cache = miss;
        if let cache::Step::Miss { key, ttl } = step {
            cache::fill(st, key, ttl, &plan.shown, &completion, usage);
        }
        semantic::fill(st, sem, &plan.shown, &completion, usage);
        Body::Whole { completion, usage, settle }
    };
    // 5 respond: the handler encodes the answer; 6 settle: when its `Settle` drops
    Ok(Answer { endpoint: plan.endpoint, shown: plan.shown, include_usage: plan.include_usage, body })
}

/// One non-streaming attempt, bounded by the server's request timeout.
async fn whole(
    b: Arc<dyn Backend>,
    req: ferrogate_core::InferenceRequest,
    limit: std::time::Duration,
) -> Result<Completion, BackendError> {
    match tokio::time::timeout(limit, b.chat(req)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Timeout(TimeoutKind::Total)),
    }
}

/// One streaming attempt; resolves with the backend's first event (retries and fallbacks happen
/// before it, never after).
async fn open_stream(
    b: Arc<dyn Backend>,
    req: ferrogate_core::InferenceRequest,
) -> Result<(StreamEvent, EventStream), BackendError> {
    let mut events = b.chat_stream(req).await?;
    match events.next().await {
        Some(Ok(first)) => Ok((first, events)),
        Some(Err(e)) => Err(e),
        None => Err(BackendError::Protocol("upstream ended the stream before any event".into())),
    }
}
