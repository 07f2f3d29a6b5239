//! The gauge sampler: once a second it reads state that lives elsewhere — health, engines,
//! deployment queues and in-flight counts, breakers, the limiter, the ledger and quota
//! refusals — and pushes it into the metrics, so observability never reaches into `AppState`.

use std::time::Duration;

use crate::state::AppState;

/// Reads state that lives elsewhere (health, engines, ledger, quotas) into the gauges.
pub fn refresh(st: &AppState) {
    let obs = &st.obs;
    let m = &obs.metrics;
    m.set_active_requests(st.inflight());
    for b in &st.backends {
        m.set_backend_health(b.name(), st.health_of(b.name()).is_healthy());
        if let Some(s) = b.stats() {
            let rate = obs.engine_rate(b.name(), s.completion_tokens_total);
            m.set_engine(b.name(), &s, rate);
        }
    }
    for d in st.registry.deployments() {
        for t in &d.targets {
            m.set_inflight(&d.name, t.backend.name(), t.inflight());
        }
        m.set_queue(&d.name, &d.queue.stats());
    }
    let now = tokio::time::Instant::now();
    for (backend, breaker) in &st.breakers {
        let state = match breaker.snapshot(now).state {
            ferrogate_core::breaker::BreakerState::Closed => "closed",
            ferrogate_core::breaker::BreakerState::Open => "open",
            ferrogate_core::breaker::BreakerState::HalfOpen => "half_open",
        };
        m.circuit_state(backend, state);
    }
    m.set_limiter(&st.limits.stats());
    if let Some(t) = &obs.tracing {
        m.set_spans(t.counts());
    }
    if let Some(t) = &st.tenancy {
        m.set_ledger(&t.ledger.stats());
        m.set_refusals(&t.refusals);
        m.set_shared_budgets(&t.quotas);
    }
}

/// Samples gauges every second (fresh tokens/s for the dashboard) and folds histogram samples.
pub fn spawn(st: &AppState) {
    let st2 = st.clone();
    st.tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = st2.stopping.cancelled() => return,
                _ = tick.tick() => {
                    refresh(&st2.current());
                    st2.obs.metrics.upkeep();
                }
            }
        }
    });
}
