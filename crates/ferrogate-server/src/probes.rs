//! Active health checks: one loop per backend, feeding `/ready`, the balancer and each
//! deployment's concurrency; a loop ends when a configuration reload removed its backend.

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::Health;

use crate::state::AppState;

/// Bound of one health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probe interval while some backend is not healthy yet (model loading): `/ready` turns quickly.
const FAST_PROBE: Duration = Duration::from_millis(250);

/// One active health-check loop per backend, so a slow or hanging probe of one backend never
/// delays another's: every `health_check_interval_secs`, or every 250 ms while the backend is
/// not healthy (model loading, down) so `/ready` and routing follow it quickly. Results feed
/// `/ready`, the balancer (unhealthy targets are avoided) and the deployment's concurrency
/// (an engine reports its slots once loaded). A loop ends when a reload removed its backend.
pub(crate) fn spawn(st: &AppState, backends: Vec<Arc<dyn ferrogate_core::Backend>>) {
    for b in backends {
        let st2 = st.clone();
        st.tasks.spawn(async move {
            loop {
                let current = st2.current();
                if !current.backends.iter().any(|x| std::ptr::addr_eq(Arc::as_ptr(x), Arc::as_ptr(&b))) {
                    return;
                }
                let h = tokio::time::timeout(PROBE_TIMEOUT, b.health())
                    .await
                    .unwrap_or_else(|_| Health::Unhealthy("health check timed out".into()));
                if h != st2.health_of(b.name()) {
                    tracing::info!(
                        backend = b.name(),
                        health = h.label(),
                        reason = h.reason(),
                        "backend health changed"
                    );
                }
                let wait = if h.is_healthy() { current.settings.health_interval } else { FAST_PROBE };
                st2.set_health(b.name(), h);
                tokio::select! {
                    _ = st2.stopping.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
}
