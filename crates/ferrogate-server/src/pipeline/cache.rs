//! The response cache (docs/STATE.md), in two parts. Where the request is planned ([`plan`]):
//! for a deployment that caches and a deterministic request (temperature 0 or a seed, unless the
//! deployment caches sampled requests too) without `Cache-Control: no-store`, the key is computed
//! once from the planned request — it covers the tenant, the deployment and everything that
//! changes the answer (the messages, every sampling parameter, tools, the effective `max_tokens`
//! after caps); for any other request nothing is copied or hashed. Between admit and dispatch
//! ([`lookup`]): a hit answers without a backend, a miss is answered by one and fills the cache.
//! `no-cache` skips the lookup and still fills. A cache failure is a miss, logged and counted —
//! never an error for the client.

use std::time::Duration;

use ferrogate_core::cache::{CacheKey, CacheUse, CachedCompletion, KeyParts, Sampling, decide_sampling};
use ferrogate_core::{Completion, StreamEvent};
use ferrogate_protocol::openai::Usage;

use crate::observability::metrics::CacheEvent;
use crate::request::RequestCx;
use crate::request::plan::Plan;
use crate::state::AppState;

/// What the cache step decided for one request.
pub enum Step {
    /// Not cacheable (no cache, the deployment does not cache, sampled, `no-store`).
    Off,
    /// Answer from the cache.
    Hit(CachedCompletion),
    /// Answer from a backend, then fill the cache under `key` for `ttl`.
    Miss { key: CacheKey, ttl: Duration },
}

/// A cacheable request, as the plan stage decided it.
pub struct Keyed {
    key: CacheKey,
    ttl: Duration,
    /// False under `Cache-Control: no-cache`: skip the lookup, still fill.
    read: bool,
}

/// The plan stage's part: the key of `plan`'s request when it may use the cache, computed once
/// from the planned request (`max_tokens` already capped by the key and the deployment). `None`
/// — with no copy and no hash — when there is no cache, the deployment does not cache, or the
/// request is not cacheable (sampled, `no-store`, a raw text prompt).
pub fn plan(st: &AppState, cx: &RequestCx, plan: &Plan) -> Option<Keyed> {
    st.cache.as_ref()?;
    let deployment = plan.deployment.name.as_str();
    let policy = st.cache_policy(deployment);
    let p = &plan.req.params;
    let logprobs = ferrogate_core::cache::wants_logprobs(&plan.req.extra);
    let sampling = Sampling { temperature: p.temperature, seed: p.seed, n: None, logprobs };
    let CacheUse::Use { read } = decide_sampling(sampling, &policy, cx.cache_control) else { return None };
    let parts = KeyParts::of_planned(&plan.req)?;
    let tenant = plan.caller.as_ref().and_then(|c| c.principal.tenant_id()).map_or("", |t| t.as_str());
    Some(Keyed { key: parts.key(tenant, deployment), ttl: policy.ttl, read })
}

/// Looks a keyed request up (after admission: a hit counts against the caller's limits).
pub async fn lookup(st: &AppState, cx: &RequestCx, plan: &Plan, keyed: Option<Keyed>) -> Step {
    let (Some(cache), Some(Keyed { key, ttl, read })) = (st.cache.as_ref(), keyed) else { return Step::Off };
    let deployment = plan.deployment.name.as_str();
    if read {
        match cache.get(&key).await {
            Ok(Some(entry)) => {
                let tokens = u64::from(entry.usage.prompt_tokens) + u64::from(entry.usage.completion_tokens);
                st.obs.metrics.cache(CacheEvent::Hit { deployment, tokens });
                return Step::Hit(entry);
            }
            Ok(None) => {}
            Err(e) => {
                st.obs.metrics.cache(CacheEvent::Error { deployment });
                tracing::warn!(request_id = %cx.id, error = %e, "response cache unavailable: answered as a miss");
                return Step::Miss { key, ttl };
            }
        }
    }
    st.obs.metrics.cache(CacheEvent::Miss { deployment });
    Step::Miss { key, ttl }
}

/// Stores a whole answer after a miss, off the request path.
pub fn fill(st: &AppState, key: CacheKey, ttl: Duration, model: &str, c: &Completion, usage: Usage) {
    let Some(cache) = st.cache.clone() else { return };
    let entry = CachedCompletion {
        model: model.to_owned(),
        text: c.text.clone(),
        tool_calls: c.tool_calls.clone(),
        finish_reason: c.finish_reason,
        usage,
    };
    st.tasks.spawn(async move {
        if let Err(e) = cache.put(&key, &entry, ttl).await {
            tracing::warn!(error = %e, "response cache: the answer was not stored");
        }
    });
}

/// A cached answer as a whole completion.
pub fn completion(e: &CachedCompletion) -> Completion {
    Completion {
        text: e.text.clone(),
        tool_calls: e.tool_calls.clone(),
        logprobs: None,
        finish_reason: e.finish_reason,
        usage: Some(e.usage),
        raw: None,
    }
}

/// A cached answer as the events of a stream: its text (and tool calls), the finish, the usage.
pub fn events(e: &CachedCompletion) -> (StreamEvent, ferrogate_core::EventStream) {
    let first = StreamEvent::Delta { text: e.text.clone(), tool_calls: e.tool_calls.clone(), logprobs: None };
    let rest = vec![Ok(StreamEvent::Finish(e.finish_reason)), Ok(StreamEvent::Usage(e.usage))];
    (first, Box::pin(futures::stream::iter(rest)))
}
