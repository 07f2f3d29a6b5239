//! `GET /health` (liveness: the process answers) and `GET /ready` (readiness: not draining, and
//! every deployment has a healthy backend with its model loaded; 503 with the reasons otherwise).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrogate_core::Health;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(st): State<AppState>) -> (StatusCode, Json<Value>) {
    let mut reasons = Vec::new();
    if st.is_draining() {
        reasons.push("shutting down".to_owned());
    }
    let mut deployments = serde_json::Map::new();
    for d in st.registry.deployments() {
        let mut backends = serde_json::Map::new();
        let mut any_ok = false;
        for t in &d.targets {
            let name = t.backend.name();
            let h = st.health_of(name);
            any_ok |= h.is_healthy();
            backends.insert(name.to_owned(), health_json(&h));
        }
        if !any_ok {
            let why: Vec<String> = d
                .targets
                .iter()
                .map(|t| format!("{}: {}", t.backend.name(), describe(&st.health_of(t.backend.name()))))
                .collect();
            reasons.push(format!("deployment '{}' has no ready backend ({})", d.name, why.join("; ")));
        }
        deployments.insert(d.name.clone(), json!({ "ready": any_ok, "backends": backends }));
    }
    let ok = reasons.is_empty();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "reasons": reasons,
        "deployments": deployments,
    });
    (status, Json(body))
}

fn health_json(h: &Health) -> Value {
    match h {
        Health::Healthy => json!({ "status": "healthy" }),
        Health::NotReady(why) => json!({ "status": "not_ready", "reason": why }),
        Health::Unhealthy(why) => json!({ "status": "unhealthy", "reason": why }),
    }
}

fn describe(h: &Health) -> String {
    match h {
        Health::Healthy => "healthy".into(),
        Health::NotReady(why) => format!("not ready: {why}"),
        Health::Unhealthy(why) => format!("unhealthy: {why}"),
    }
}
