//! `GET /health` (liveness: the process answers) and `GET /ready` (readiness: not draining, warm-up
//! done, every deployment has a healthy backend with its model loaded, and not every deployment's
//! queue is full — a load balancer should send new work elsewhere; 503 with the reasons otherwise).
//! An embedded model loaded on demand is ready while unloaded (a request loads it); `/ready`
//! shows each backend's model state (`loaded`, `loading`, `unloaded`) where it has one.
//! `/ready` also shows each backend's circuit breaker and each deployment's queue; an open
//! breaker does not make the instance unready (every replica sees the same upstream, and taking
//! them all out of rotation would turn a backend fault into a full outage).
//!
//! Invariant: callers that are not operators (`auth::is_operator`) see only the status — no
//! upstream error texts, file paths, backend names or queue state.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use ferrogate_core::Health;
use ferrogate_core::breaker::BreakerSnapshot;
use serde_json::{Value, json};

use crate::auth;
use crate::state::AppState;

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(st): State<AppState>, req: Request) -> (StatusCode, Json<Value>) {
    let (status, body) = readiness(&st);
    if auth::is_operator(&st, &req) {
        return (status, Json(body));
    }
    (status, Json(json!({ "status": body["status"] })))
}

fn readiness(st: &AppState) -> (StatusCode, Value) {
    let mut reasons = Vec::new();
    if st.is_draining() {
        reasons.push("shutting down".to_owned());
    }
    if st.is_warming() {
        reasons.push("warming up".to_owned());
    }
    let mut deployments = serde_json::Map::new();
    let mut all_full = true;
    for d in st.registry.deployments() {
        let mut backends = serde_json::Map::new();
        let mut any_ok = false;
        for t in &d.targets {
            let name = t.backend.name();
            let h = st.health_of(name);
            any_ok |= h.is_healthy();
            let mut b = health_json(&h);
            b["weight"] = json!(t.weight);
            b["inflight"] = json!(t.inflight());
            if let Some(state) = t.backend.model_state() {
                b["model"] = json!(state.as_str());
            }
            b["breaker"] = breaker_json(&t.breaker.snapshot(tokio::time::Instant::now()));
            backends.insert(name.to_owned(), b);
        }
        if !any_ok {
            let why: Vec<String> = d
                .targets
                .iter()
                .map(|t| format!("{}: {}", t.backend.name(), describe(&st.health_of(t.backend.name()))))
                .collect();
            reasons.push(format!("deployment '{}' has no ready backend ({})", d.name, why.join("; ")));
        }
        let q = d.queue.stats();
        all_full &= q.is_full();
        let queue = json!({
            "concurrency": q.concurrency, "running": q.running, "size": q.size,
            "waiting_interactive": q.waiting_interactive, "waiting_batch": q.waiting_batch,
            "rejected_full": q.rejected_full, "timed_out": q.timed_out,
        });
        deployments.insert(d.name.clone(), json!({ "ready": any_ok, "backends": backends, "queue": queue }));
    }
    if all_full && !deployments.is_empty() {
        reasons.push("every deployment's queue is full".to_owned());
    }
    let ok = reasons.is_empty();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "reasons": reasons,
        "deployments": deployments,
    });
    (status, body)
}

fn health_json(h: &Health) -> Value {
    match h {
        Health::Healthy => json!({ "status": "healthy" }),
        Health::NotReady(why) => json!({ "status": "not_ready", "reason": why }),
        Health::Unhealthy(why) => json!({ "status": "unhealthy", "reason": why }),
    }
}

fn breaker_json(b: &BreakerSnapshot) -> Value {
    json!({
        "state": b.state.as_str(),
        "consecutive_failures": b.consecutive_failures,
        "window_requests": b.window_requests,
        "window_failures": b.window_failures,
        "opened_total": b.opened_total,
        "retry_in_ms": b.retry_in.map(|d| d.as_millis() as u64),
    })
}

fn describe(h: &Health) -> String {
    match h {
        Health::Healthy => "healthy".into(),
        Health::NotReady(why) => format!("not ready: {why}"),
        Health::Unhealthy(why) => format!("unhealthy: {why}"),
    }
}
