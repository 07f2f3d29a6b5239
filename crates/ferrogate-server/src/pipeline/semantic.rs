//! The semantic-cache step (docs/STATE.md), after the exact cache missed: for a deployment with
//! `semantic_cache`, embed the request's last user message with the configured embedding
//! deployment, and look for an answer to a paraphrase within the same scope (tenant, deployment,
//! earlier messages and parameters: `core::cache::semantic`) at or above the threshold. A hit
//! answers without the chat backend (`x-ferrogate-cache: semantic-hit`, the similarity in
//! `x-ferrogate-cache-similarity`); an answer to a miss fills the index once it is whole — at
//! once for a JSON answer, at its end for a stream that finished without tool calls
//! (`settle::CacheFill`).
//!
//! Rules: `Cache-Control: no-store` skips the step, `no-cache` skips the lookup and still fills;
//! any failure — the embedding call, the index — is a miss, logged, never an error for the client.
//! The embedding call is the gateway's own cost: not metered to the caller.

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::cache::{CacheControl, CachedCompletion, SemanticHit, SemanticScope, semantic_key};
use ferrogate_core::{Completion, EmbedItem, EmbedRequest};
use ferrogate_protocol::openai::{ChatCompletionRequest, Usage};

use crate::request::RequestCx;
use crate::request::plan::Plan;
use crate::state::AppState;

/// How long the embedding call may take before the step gives up (a miss).
const EMBED_TIMEOUT: Duration = Duration::from_secs(5);

pub enum Semantic {
    /// The deployment has no semantic cache, or the request cannot use it.
    Off,
    Hit(SemanticHit),
    /// Answered by the backend; the answer, once whole, fills the index under `scope`.
    Miss {
        scope: SemanticScope,
        vector: Vec<f32>,
        ttl: Duration,
    },
}

pub async fn lookup(st: &AppState, cx: &RequestCx, plan: &Plan, req: Option<&ChatCompletionRequest>) -> Semantic {
    let deployment = plan.deployment.name.as_str();
    let (Some(index), Some(policy), Some(req)) = (st.semantic.as_ref(), st.semantic_policy(deployment), req) else {
        return Semantic::Off;
    };
    let CacheControl { no_store, no_cache } = cx.cache_control;
    if no_store || req.n.is_some_and(|n| n > 1) {
        return Semantic::Off;
    }
    let tenant = plan.caller.as_ref().and_then(|c| c.principal.tenant_id()).map_or("", |t| t.as_str());
    let Some((text, scope)) = semantic_key(tenant, deployment, req) else { return Semantic::Off };
    let Some(vector) = embed(st, &cx.id, &policy.embedding, text).await else { return Semantic::Off };
    let ttl = policy.ttl;
    if !no_cache {
        match index.nearest(&scope, &vector, policy.threshold).await {
            Ok(Some(hit)) => return Semantic::Hit(hit),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(request_id = %cx.id, error = %e, "semantic cache unavailable: answered as a miss");
                return Semantic::Off;
            }
        }
    }
    Semantic::Miss { scope, vector, ttl }
}

/// The message's unit vector from the embedding deployment (first healthy target); `None` on
/// any failure (logged).
async fn embed(st: &AppState, request_id: &str, deployment: &str, text: String) -> Option<Vec<f32>> {
    let dep = st.registry.resolve(deployment)?;
    let mut guard = dep.pick().ok()?;
    let target = guard.target();
    let req = EmbedRequest {
        request_id: request_id.to_owned(),
        model: target.upstream_model.clone(),
        inputs: vec![EmbedItem::Text(text)],
        dimensions: None,
        user: None,
    };
    let backend = Arc::clone(&target.backend);
    let result = tokio::time::timeout(EMBED_TIMEOUT, backend.embed(req)).await;
    match result {
        Ok(Ok(mut out)) if out.vectors.len() == 1 => {
            guard.succeeded();
            let mut v = out.vectors.swap_remove(0);
            normalize(&mut v);
            Some(v)
        }
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            guard.failed(&e);
            tracing::warn!(request_id, error = %e, "semantic cache: the embedding call failed (a miss)");
            None
        }
        Err(_) => {
            tracing::warn!(request_id, "semantic cache: the embedding call timed out (a miss)");
            None
        }
    }
}

/// Unit length, whatever the embedding backend returned (an upstream may not normalize).
fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Stores a whole answer to a miss, off the request path.
pub fn fill(st: &AppState, miss: Semantic, model: &str, c: &Completion, usage: Usage) {
    let (Semantic::Miss { scope, vector, ttl }, Some(index)) = (miss, st.semantic.clone()) else { return };
    let entry = CachedCompletion {
        model: model.to_owned(),
        text: c.text.clone(),
        tool_calls: c.tool_calls.clone(),
        finish_reason: c.finish_reason,
        usage,
    };
    st.tasks.spawn(async move {
        if let Err(e) = index.insert(&scope, vector, entry, ttl).await {
            tracing::warn!(error = %e, "semantic cache: the answer was not stored");
        }
    });
}
