//! `server.warmup`: at start, one short request (one token of "hi") per deployment, sent to its
//! first backend that turns healthy, so the first client does not pay for cold connections,
//! an upstream's lazy model load or the engine's first batch. `/ready` answers 503 ("warming
//! up") until every deployment's warm-up has finished — succeeded, failed or timed out: a
//! failing warm-up is logged and never keeps the instance out of rotation for good.
//!
//! A deployment whose every backend has its model unloaded (loaded on demand) is not warmed: a
//! warm-up would load it. Warm-up requests go straight to the backend: no ledger row, no metrics, no rate limits.

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::{Backend, Deployment, GenParams, InferenceRequest, Input, ModelState, Target};
use ferrogate_protocol::openai::{ChatMessage, Role};

use crate::state::AppState;

/// How long a deployment's warm-up waits for one of its backends to turn healthy.
const WAIT_HEALTHY: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(50);

/// Starts the warm-up task when `server.warmup` is on; it marks the state warmed when done.
pub fn spawn(st: &AppState) {
    if !st.is_warming() {
        return;
    }
    let st2 = st.clone();
    st.tasks.spawn(async move {
        let all = st2.registry.deployments().iter().map(|d| warm(&st2, Arc::clone(d)));
        tokio::select! {
            _ = futures::future::join_all(all) => tracing::info!("warm-up finished"),
            () = st2.stopping.cancelled() => {}
        }
        st2.warmed();
    });
}

async fn warm(st: &AppState, d: Arc<Deployment>) {
    if !d.targets.iter().any(|t| loaded_at_start(t)) {
        tracing::info!(deployment = %d.name, "warm-up skipped: its model loads on demand");
        return;
    }
    let Some(backend) = healthy_backend(st, &d).await else {
        tracing::warn!(deployment = %d.name, "warm-up skipped: no backend turned healthy");
        return;
    };
    let req = request(&d.name);
    match tokio::time::timeout(st.settings.request_timeout, backend.chat(req)).await {
        Ok(Ok(_)) => tracing::info!(deployment = %d.name, backend = backend.name(), "warmed up"),
        Ok(Err(e)) => tracing::warn!(deployment = %d.name, backend = backend.name(), error = %e, "warm-up failed"),
        Err(_) => tracing::warn!(deployment = %d.name, backend = backend.name(), "warm-up timed out"),
    }
}

/// The deployment's first backend to report healthy, within [`WAIT_HEALTHY`].
async fn healthy_backend(st: &AppState, d: &Deployment) -> Option<Arc<dyn Backend>> {
    let deadline = tokio::time::Instant::now() + WAIT_HEALTHY;
    loop {
        let warm = d.targets.iter().filter(|t| loaded_at_start(t));
        if let Some(t) = warm.into_iter().find(|t| st.health_of(t.backend.name()).is_healthy()) {
            return Some(Arc::clone(&t.backend));
        }
        if tokio::time::Instant::now() >= deadline || st.stopping.is_cancelled() {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Not a model left unloaded until a request needs it (a warm-up would load it).
fn loaded_at_start(t: &Target) -> bool {
    t.backend.model_state() != Some(ModelState::Unloaded)
}

fn request(deployment: &str) -> InferenceRequest {
    InferenceRequest {
        request_id: format!("warmup-{}", uuid::Uuid::now_v7().simple()).into(),
        model: deployment.to_owned(),
        input: Input::Chat { messages: vec![ChatMessage::new(Role::User, "hi")], tools: None, tool_choice: None },
        params: GenParams { max_tokens: Some(1), ..GenParams::default() },
        extra: serde_json::Map::new(),
        obs: Default::default(),
        passthrough: false,
    }
}
