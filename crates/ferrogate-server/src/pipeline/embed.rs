//! The embeddings path (`/v1/embeddings`, Ollama's `/api/embed` and `/api/embeddings`), in
//! request order like [`super::run`]: plan (pure: validate, route, scope, the deployment serves
//! embeddings) → admit (guardrails on the text inputs, budgets reserving the prompt estimate
//! only, rate limits) → dispatch (queue, balanced pick, retries and fallbacks; the call bounded
//! by the request timeout) → settle (a ledger row with the prompt tokens, when `Settle` drops).
//!
//! Invariant: a text input reaches the backend as the guardrails left it (redacted, when they
//! redact): each text travels through admission as one user message and is read back after it.

use std::sync::Arc;

use ferrogate_core::{
    Backend, BackendError, EmbedItem, EmbedOutput, EmbedRequest, GenParams, InferenceRequest, Input, TimeoutKind,
    tokens,
};
use ferrogate_protocol::openai::embeddings::{EmbeddingItem, EmbeddingRequest};
use ferrogate_protocol::openai::{ChatMessage, FinishReason, Role, Usage};

use super::{admit, plan};
use crate::error::ApiError;
use crate::request::names::RequestedModel;
use crate::request::{Endpoint, RequestCx};
use crate::resilience::dispatch::{self, Dispatched};
use crate::settle::Settle;
use crate::state::AppState;

/// The vectors, in input order, with what the handler needs to answer and settle.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
    /// The model name the response carries.
    pub shown: RequestedModel,
    /// Finished; records the request when dropped.
    pub settle: Settle,
}

pub async fn run(st: &AppState, cx: &RequestCx, r: EmbeddingRequest, endpoint: Endpoint) -> Result<Embedded, ApiError> {
    // 1 plan (pure)
    r.validate()?;
    let (dimensions, user) = (r.dimensions, r.user.clone());
    let items = r.input.into_items();
    let prompt_estimate = items.iter().map(estimate).fold(0u32, u32::saturating_add);
    let input = Input::Chat { messages: text_messages(&items), tools: None, tool_choice: None };
    // Embeddings generate nothing: the budget reserves the prompt alone.
    let params = GenParams { max_tokens: Some(0), user: user.clone(), ..GenParams::default() };
    let mut plan = plan::routed(st, cx, endpoint, r.model, input, params, prompt_estimate)?;
    if !plan.deployment.capabilities().embeddings {
        let msg = format!("Model '{}' does not serve embeddings", plan.shown);
        return Err(ApiError::invalid(Some("model".into()), msg));
    }
    plan.prompt_estimate = prompt_estimate;
    // 2 admit
    let held = admit::admit(st, &mut plan).await?;
    let inputs = after_guardrails(items, &plan.req.input);
    // 3 dispatch
    let limit = st.settings.request_timeout;
    let call = move |b: Arc<dyn Backend>, req: InferenceRequest| {
        let er = EmbedRequest {
            request_id: req.request_id.to_string(),
            model: req.model,
            inputs: inputs.clone(),
            dimensions,
            user: user.clone(),
        };
        embed(b, er, limit)
    };
    let Dispatched { mut lease, value, mut settle } = dispatch::run(st, &mut plan, held, call).await?;
    lease.succeeded();
    let EmbedOutput { vectors, prompt_tokens } = value;
    let prompt_tokens = prompt_tokens.unwrap_or(prompt_estimate);
    // 4 settle: when the handler's response drops `settle`
    settle.finish(FinishReason::Stop, Usage::new(prompt_tokens, 0, None));
    Ok(Embedded { vectors, prompt_tokens, shown: plan.shown, settle })
}

/// One attempt, bounded by the server's request timeout.
async fn embed(
    b: Arc<dyn Backend>,
    req: EmbedRequest,
    limit: std::time::Duration,
) -> Result<EmbedOutput, BackendError> {
    let n = req.inputs.len();
    match tokio::time::timeout(limit, b.embed(req)).await {
        Ok(Ok(out)) if out.vectors.len() != n => {
            Err(BackendError::Protocol(format!("{} vectors for {n} inputs", out.vectors.len())))
        }
        Ok(r) => r,
        Err(_) => Err(BackendError::Timeout(TimeoutKind::Total)),
    }
}

fn estimate(item: &EmbeddingItem) -> u32 {
    match item {
        EmbeddingItem::Text(t) => tokens::estimate(t),
        EmbeddingItem::Tokens(ids) => u32::try_from(ids.len()).unwrap_or(u32::MAX),
    }
}

/// The text inputs as user messages, in order: what guardrails inspect (and may redact).
fn text_messages(items: &[EmbeddingItem]) -> Vec<ChatMessage> {
    items
        .iter()
        .filter_map(|i| match i {
            EmbeddingItem::Text(t) => Some(ChatMessage::new(Role::User, t.clone())),
            EmbeddingItem::Tokens(_) => None,
        })
        .collect()
}

/// The inputs to embed: each text as the guardrails left its message, token ids unchanged.
fn after_guardrails(items: Vec<EmbeddingItem>, input: &Input) -> Vec<EmbedItem> {
    let mut texts = match input {
        Input::Chat { messages, .. } => messages.iter().map(ChatMessage::text).collect::<Vec<_>>().into_iter(),
        Input::Text(t) => vec![t.clone()].into_iter(),
    };
    items
        .into_iter()
        .map(|i| match i {
            EmbeddingItem::Text(original) => EmbedItem::Text(texts.next().unwrap_or(original)),
            EmbeddingItem::Tokens(ids) => EmbedItem::Tokens(ids),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_texts_replace_the_originals_in_order() {
        let items = vec![
            EmbeddingItem::Text("call 555".into()),
            EmbeddingItem::Tokens(vec![1, 2]),
            EmbeddingItem::Text("b".into()),
        ];
        let mut messages = text_messages(&items);
        assert_eq!(messages.len(), 2);
        messages[0] = ChatMessage::new(Role::User, "call [PHONE]");
        let input = Input::Chat { messages, tools: None, tool_choice: None };
        assert_eq!(
            after_guardrails(items, &input),
            vec![EmbedItem::Text("call [PHONE]".into()), EmbedItem::Tokens(vec![1, 2]), EmbedItem::Text("b".into())]
        );
    }
}
