//! The resilience half of traffic governance, server side (docs/GOVERNANCE.md): config sections
//! (`config`), the client's routing headers (`hints`), the virtual tiered model (`tiers`), and
//! `dispatch` — the execute stage's loop of deployment queue → balanced pick → call → retry →
//! fallback. The policies themselves (queue, breaker, balancer, retry budget, classifier) are
//! pure code in `ferrogate-core`.

pub mod config;
pub mod dispatch;
pub mod hints;
pub mod tiers;

use std::time::Duration;

use ferrogate_core::Policy;
use ferrogate_core::queue::QueueConfig;

use self::config::Resilience;
use crate::settings::sections::DeploymentConfig;

/// A deployment's policy from its config and the defaults. Concurrency not configured starts
/// at the backends' known slots (`slots` of a backend name: the engine's configured `parallel`,
/// else 1 until its model is loaded and reports its slots; `queue.backend_concurrency` for HTTP
/// backends) and follows them afterwards (`Deployment::resize_to_slots`, run by the health
/// checker).
pub fn policy(r: &Resilience, d: &DeploymentConfig, slots: impl Fn(&str) -> usize) -> Policy {
    let concurrency = d.concurrency.unwrap_or_else(|| d.backends.iter().map(|b| slots(b)).sum::<usize>().max(1));
    Policy {
        queue: QueueConfig {
            concurrency,
            size: d.queue_size.unwrap_or(r.queue.size),
            max_wait: Duration::from_millis(d.queue_max_wait_ms.unwrap_or(r.queue.max_wait_ms)),
        },
        retry: r.retry.to_core(),
        fallbacks: d.fallbacks.clone(),
        max_tokens_cap: d.max_tokens_cap,
        concurrency_fixed: d.concurrency.is_some(),
        extra_body: d.extra_body,
        routing: d.routing,
        scorer: r.routing.clone(),
    }
}
