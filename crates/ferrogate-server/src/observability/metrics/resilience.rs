//! The resilience concern: typed events from the dispatch loop ([`ResilienceEvent`]) and the
//! snapshots the sampler pushes — queue depth and refusals, breaker state, backend health and
//! in-flight requests.

use std::time::Duration;

use super::*;

/// What the dispatch loop reports as it happens.
#[derive(Debug, Clone, Copy)]
pub enum ResilienceEvent<'a> {
    /// How long a request waited in `deployment`'s queue before it was admitted.
    QueueWait { deployment: &'a str, waited: Duration },
    /// An attempt on `backend` failed and the request is tried again.
    Retry { backend: &'a str },
    /// A request of `deployment` moved to another of its backends.
    Failover { deployment: &'a str },
    /// A request for `deployment` was served by a fallback deployment.
    Fallback { deployment: &'a str },
}

impl Metrics {
    /// Records one resilience event.
    pub fn resilience(&self, e: ResilienceEvent<'_>) {
        match e {
            ResilienceEvent::QueueWait { deployment, waited } => self.queue_wait(deployment, waited),
            ResilienceEvent::Retry { backend } => self.retry(backend),
            ResilienceEvent::Failover { deployment } => self.failover(deployment),
            ResilienceEvent::Fallback { deployment } => self.fallback(deployment),
        }
    }
}

impl Metrics {
    /// The current depth of a deployment's admission queue.
    pub fn queue_depth(&self, deployment: &str, n: usize) {
        if let Ok(mut q) = self.queues.lock() {
            q.insert(deployment.to_owned(), n);
        }
        self.gauge(QUEUE_DEPTH, vec![label("deployment", deployment)]).set(n as f64);
    }

    /// How long a request waited in a deployment's queue before it was admitted.
    fn queue_wait(&self, deployment: &str, waited: Duration) {
        self.histogram(QUEUE_WAIT, vec![label("deployment", deployment)]).record(waited.as_secs_f64());
    }

    /// A backend's breaker moved to `state` ∈ [`CIRCUIT_STATES`].
    pub fn circuit_state(&self, backend: &str, state: &'static str) {
        if let Ok(mut c) = self.circuits.lock() {
            c.insert(backend.to_owned(), state);
        }
        for s in CIRCUIT_STATES {
            let v = if *s == state { 1.0 } else { 0.0 };
            self.gauge(CIRCUIT_STATE, vec![label("backend", backend), slabel("state", s)]).set(v);
        }
    }

    /// An attempt on `backend` failed and the request is tried again.
    fn retry(&self, backend: &str) {
        self.counter(RETRIES, vec![label("backend", backend)]).increment(1);
    }

    /// A request of `deployment` moved to another of its backends.
    fn failover(&self, deployment: &str) {
        self.counter(FAILOVERS, vec![label("deployment", deployment)]).increment(1);
    }

    /// A request for `deployment` was served by a fallback deployment.
    fn fallback(&self, deployment: &str) {
        self.counter(FALLBACKS, vec![label("deployment", deployment)]).increment(1);
    }

    /// The last depth `queue_depth` reported for a deployment.
    pub fn queue_depth_of(&self, deployment: &str) -> usize {
        self.queues.lock().ok().and_then(|q| q.get(deployment).copied()).unwrap_or(0)
    }

    /// The last state `circuit_state` reported for a backend.
    pub fn circuit_of(&self, backend: &str) -> &'static str {
        self.circuits.lock().ok().and_then(|c| c.get(backend).copied()).unwrap_or("closed")
    }

    pub fn set_backend_health(&self, backend: &str, healthy: bool) {
        self.gauge(BACKEND_HEALTHY, vec![label("backend", backend)]).set(if healthy { 1.0 } else { 0.0 });
    }

    pub fn set_inflight(&self, deployment: &str, backend: &str, n: usize) {
        self.gauge(BACKEND_INFLIGHT, vec![label("deployment", deployment), label("backend", backend)]).set(n as f64);
    }

    /// A deployment's admission queue: depth now, and refusals since start.
    pub fn set_queue(&self, deployment: &str, q: &ferrogate_core::queue::QueueStats) {
        self.queue_depth(deployment, q.waiting_interactive + q.waiting_batch);
        self.counter(QUEUE_REJECTIONS, vec![label("deployment", deployment)]).absolute(q.rejected_full);
    }
}
