//! The execute stage's dispatch loop: for the planned deployment, then each of its fallbacks —
//! wait for a slot in the deployment's queue, pick a target (by the deployment's routing mode —
//! power of two choices, round robin, prefix affinity — among targets whose breaker is closed),
//! call it, and on a retryable failure (connect error, 5xx, 429) retry on another target after a
//! jittered backoff, within the attempt limit and the deployment's retry budget. A deployment that is overloaded (queue full or timed out), has
//! every breaker open, or failed upstream hands the request to its next fallback.
//!
//! Invariants: everything here happens before the first byte reaches the client (a stream's
//! call resolves at its first event); `Settle` is created once, when the first slot is granted,
//! so a request refused by every queue leaves its usage row to the auth guard like any other
//! rejection; each attempt's breaker ticket is resolved with that attempt's outcome.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrogate_core::queue::Permit;
use ferrogate_core::routing::with_rng;
use ferrogate_core::{Backend, BackendError, Blame, Deployment, InferenceRequest, PickError, TargetGuard};

use crate::error::ApiError;
use crate::observability::metrics::ResilienceEvent;
use crate::request::caller::Caller;
use crate::request::names::{BackendName, DeploymentName, UpstreamModel};
use crate::request::plan::Plan;
use crate::settle::{Reservations, Settle};
use crate::state::AppState;

/// What a successful dispatch holds for as long as the response runs: the deployment slot and
/// the target's in-flight slot with its breaker ticket (neither for an answer from the cache).
pub struct Lease {
    target: Option<TargetGuard>,
    _permit: Option<Permit>,
}

impl Lease {
    /// Holds nothing: an answer that took no slot (the response cache).
    pub fn none() -> Self {
        Self { target: None, _permit: None }
    }

    /// The call succeeded: the target's breaker learns it.
    pub fn succeeded(&mut self) {
        if let Some(t) = self.target.as_mut() {
            t.succeeded();
        }
    }

    /// The call failed after it started (a stream cut): the breaker learns it.
    pub fn failed(&mut self, e: &BackendError) {
        if let Some(t) = self.target.as_mut() {
            t.failed(e);
        }
    }
}

pub struct Dispatched<T> {
    pub lease: Lease,
    pub value: T,
    pub settle: Settle,
}

/// Why one deployment could not serve, and whether a fallback may.
struct Failed {
    err: ApiError,
    fallback: bool,
}

/// Runs `call` against the plan's deployment chain until one attempt succeeds. `held` moves into
/// the request's `Settle` when the first slot is granted (dropped unused: given back whole).
pub async fn run<T, F, Fut>(
    st: &AppState,
    plan: &mut Plan,
    held: Reservations,
    mut call: F,
) -> Result<Dispatched<T>, ApiError>
where
    F: FnMut(Arc<dyn Backend>, InferenceRequest) -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let chain = chain(st, plan);
    // The fair-share key, borrowed from the caller (no copy per request).
    let caller = plan.caller.clone();
    let key = queue_key(caller.as_deref());
    let mut settle: Option<Settle> = None;
    let mut held = Some(held);
    let mut last: Option<ApiError> = None;
    for (i, dep) in chain.iter().enumerate() {
        if i > 0 {
            chain[i - 1].stats.fallbacks.fetch_add(1, Ordering::Relaxed);
            st.obs.metrics.resilience(ResilienceEvent::Fallback { deployment: &chain[0].name });
            tracing::info!(request_id = %plan.req.request_id, from = %chain[i - 1].name, to = %dep.name, "falling back");
        }
        let asked = tokio::time::Instant::now();
        let permit = match dep.queue.acquire(key, plan.priority).await {
            Ok(p) => {
                st.obs
                    .metrics
                    .resilience(ResilienceEvent::QueueWait { deployment: &dep.name, waited: asked.elapsed() });
                p
            }
            Err(e) => {
                last = Some(e.into());
                continue;
            }
        };
        let s = settle.get_or_insert_with(|| Settle::new(st, plan, held.take().unwrap_or_default()));
        s.deployment = DeploymentName::new(dep.name.as_str());
        s.fallback_from = (i > 0).then(|| DeploymentName::new(chain[0].name.as_str()));
        match attempts(st, plan, dep, s, &mut call).await {
            Ok((target, value)) => {
                let settle = settle.take().ok_or_else(|| ApiError::internal("dispatch lost its settle"))?;
                return Ok(Dispatched { lease: Lease { target: Some(target), _permit: Some(permit) }, value, settle });
            }
            Err(f) => {
                last = Some(f.err);
                if !f.fallback {
                    break;
                }
            }
        }
    }
    let e =
        last.unwrap_or_else(|| ApiError::from(ferrogate_core::GatewayError::NoBackend(plan.deployment.name.clone())));
    Err(match settle.as_mut() {
        Some(s) => s.fail(e),
        None => e,
    })
}

/// The planned deployment and its fallbacks that exist and the caller may use.
fn chain(st: &AppState, plan: &Plan) -> Vec<Arc<Deployment>> {
    let mut out = vec![Arc::clone(&plan.deployment)];
    for name in &plan.deployment.policy.fallbacks {
        let Some(d) = st.registry.resolve(name) else { continue };
        let allowed = plan.caller.as_ref().is_none_or(|c| c.check_model(d, name).is_ok());
        if allowed && !out.iter().any(|o| Arc::ptr_eq(o, d)) {
            out.push(Arc::clone(d));
        }
    }
    out
}

/// Fair-share identity in the queue: the stored key, else one shared anonymous identity.
fn queue_key(caller: Option<&Caller>) -> &str {
    caller.and_then(|c| c.principal.key_id()).map_or("", |k| k.as_str())
}

/// Attempts on one deployment: first try, then retries on other targets when possible.
async fn attempts<T, F, Fut>(
    st: &AppState,
    plan: &Plan,
    dep: &Deployment,
    settle: &mut Settle,
    call: &mut F,
) -> Result<(TargetGuard, T), Failed>
where
    F: FnMut(Arc<dyn Backend>, InferenceRequest) -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let policy = &dep.policy.retry;
    let mut tried = Vec::new();
    let mut retries = 0;
    let mut reconnected = false;
    dep.retry_budget.deposit();
    loop {
        let mut guard = dep.pick_for(&plan.req.input, &tried).map_err(|e| picked_none(dep, e))?;
        tried.push(guard.index());
        let target = guard.target();
        settle.backend = BackendName::of(&target.backend);
        let route = guard.route();
        settle.backend_route = Some(route);
        plan.obs.picked(route.reason.as_str(), route.matched);
        settle.model_served = UpstreamModel::new(target.upstream_model.as_str());
        let mut req = plan.req.clone();
        req.model = target.upstream_model.clone();
        req.params.max_tokens = dep.cap_max_tokens(req.params.max_tokens);
        let e = match call(Arc::clone(&target.backend), req).await {
            Ok(v) => return Ok((guard, v)),
            Err(e) => e,
        };
        if matches!(e, BackendError::Closed(_)) && !reconnected {
            // A kept-alive connection closed under the request as it was reused: once per
            // request, the same target again at once over a fresh connection — neither a
            // failure of the backend (the guard drops neutral) nor a retry of the policy (a
            // failover would cost a prefix-routed prompt its cache).
            reconnected = true;
            tried.pop();
            tracing::debug!(request_id = %plan.req.request_id, backend = %settle.backend, error = %e, "reconnecting");
            continue;
        }
        guard.failed(&e);
        drop(guard);
        let may_retry = e.retryable() && retries < policy.max_retries;
        if may_retry && !dep.retry_budget.try_withdraw() {
            dep.stats.retries_denied.fetch_add(1, Ordering::Relaxed);
        } else if may_retry {
            retries += 1;
            dep.stats.retries.fetch_add(1, Ordering::Relaxed);
            st.obs.metrics.resilience(ResilienceEvent::Retry { backend: settle.backend.as_str() });
            if dep.targets.len() > tried.len() {
                // Another backend of the deployment takes the next attempt.
                st.obs.metrics.resilience(ResilienceEvent::Failover { deployment: &dep.name });
            }
            let wait = with_rng(|rng| policy.backoff(retries, rng));
            tracing::info!(
                request_id = %plan.req.request_id, backend = %settle.backend, error = %e,
                retry = retries, wait_ms = wait.as_millis() as u64, "retrying"
            );
            tokio::time::sleep(wait).await;
            continue;
        }
        let fallback = e.blame() == Blame::Upstream;
        return Err(Failed { err: e.into(), fallback });
    }
}

fn picked_none(dep: &Deployment, e: PickError) -> Failed {
    let err = match e {
        PickError::NoTargets => ApiError::from(ferrogate_core::GatewayError::NoBackend(dep.name.clone())),
        PickError::CircuitOpen => {
            let now = tokio::time::Instant::now();
            let wait = dep.targets.iter().filter_map(|t| t.breaker.snapshot(now).retry_in).min();
            ApiError::circuit_open(&dep.name, wait.unwrap_or_default())
        }
    };
    Failed { err, fallback: true }
}
