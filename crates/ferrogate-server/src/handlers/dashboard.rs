//! `GET /metrics` (Prometheus text), `GET /dashboard` (one static page, embedded in the binary:
//! no build step, no CDN, works offline) and `GET /dashboard/events` (SSE: one JSON snapshot
//! per second — aggregates, health, engines, queues and the recent-request feed).
//!
//! Access: `/dashboard` itself holds no data and is public; `/dashboard/events` needs the master
//! key when tenancy is on, a static key when only static keys are configured, nothing when auth
//! is off (see `auth`). `/metrics` needs a key unless `metrics.public = true`.
//!
//! The page is sent with a strict Content-Security-Policy: nothing but its own inline script and
//! style (allowed by their SHA-256 hashes) and `fetch` to this origin; no frames, forms or
//! other origins — a script injected into the page could neither run nor send the key away.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio_stream::wrappers::IntervalStream;

use crate::observability::feed::{self, Entry, Window};
use crate::state::AppState;

pub const DASHBOARD: &str = "/dashboard";
pub const DASHBOARD_EVENTS: &str = "/dashboard/events";
pub const METRICS: &str = "/metrics";

const PAGE: &str = include_str!("dashboard.html");

pub async fn metrics(State(st): State<AppState>) -> Response {
    crate::sampler::refresh(&st);
    let mut res = st.obs.metrics.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}

pub async fn page() -> Response {
    let mut res = Html(PAGE).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&csp(PAGE)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The page's policy: its inline `<script>` and `<style>` blocks by hash, `fetch` to itself.
fn csp(page: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes(page, "script"),
        hashes(page, "style")
    )
}

/// `'sha256-…'` of every `<tag>…</tag>` block's content, space-separated (`'none'` if none).
fn hashes(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        let digest = Sha256::digest(&body.as_bytes()[..end]);
        out.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        rest = &body[end..];
    }
    if out.is_empty() { "'none'".to_owned() } else { out.join(" ") }
}

#[derive(Debug, Serialize)]
struct Snapshot {
    now_ms: u64,
    version: &'static str,
    active_requests: usize,
    /// Tenancy on: requests carry tenants (the "Top tenants" panel says why it is empty if not).
    tenancy: bool,
    /// Requests per second, each of the last two minutes' seconds, oldest first.
    rate_history: Vec<u64>,
    last_10s: Window,
    last_60s: Window,
    deployments: Vec<DeploymentView>,
    backends: Vec<BackendView>,
    recent: Vec<Entry>,
}

#[derive(Debug, Serialize)]
struct DeploymentView {
    name: String,
    /// Admission queue depth (issue 5's queue; 0 until it reports).
    queue_depth: usize,
    targets: Vec<TargetView>,
}

#[derive(Debug, Serialize)]
struct TargetView {
    backend: String,
    healthy: bool,
    inflight: usize,
}

#[derive(Debug, Serialize)]
struct BackendView {
    name: String,
    kind: &'static str,
    /// healthy, not_ready or unhealthy (the reason stays in the log).
    health: &'static str,
    circuit: &'static str,
    engine: Option<EngineView>,
}

#[derive(Debug, Serialize)]
struct EngineView {
    model_loaded: bool,
    slots_busy: u64,
    slots_total: u64,
    queue_depth: u64,
    kv_usage: f64,
    tokens_per_sec: f64,
}

fn snapshot(st: &AppState) -> Snapshot {
    crate::sampler::refresh(st);
    let now = feed::now_ms();
    let m = &st.obs.metrics;
    let deployments = st
        .registry
        .deployments()
        .iter()
        .map(|d| DeploymentView {
            name: d.name.clone(),
            queue_depth: m.queue_depth_of(&d.name),
            targets: d
                .targets
                .iter()
                .map(|t| TargetView {
                    backend: t.backend.name().to_owned(),
                    healthy: t.is_healthy(),
                    inflight: t.inflight(),
                })
                .collect(),
        })
        .collect();
    let mut backends: Vec<BackendView> = st
        .backends
        .iter()
        .map(|b| BackendView {
            name: b.name().to_owned(),
            kind: b.kind(),
            health: st.health_of(b.name()).label(),
            circuit: m.circuit_of(b.name()),
            engine: b.stats().map(|s| EngineView {
                model_loaded: s.model_loaded,
                slots_busy: s.slots_busy,
                slots_total: s.slots_total,
                queue_depth: s.queue_depth,
                kv_usage: if s.kv_cells_total == 0 { 0.0 } else { s.kv_cells_used as f64 / s.kv_cells_total as f64 },
                tokens_per_sec: st.obs.engine_tokens_per_sec(b.name()),
            }),
        })
        .collect();
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    Snapshot {
        now_ms: now,
        version: env!("CARGO_PKG_VERSION"),
        active_requests: st.inflight(),
        tenancy: st.tenancy.is_some(),
        rate_history: st.obs.feed.per_second(now),
        last_10s: st.obs.feed.window(Duration::from_secs(10), now),
        last_60s: st.obs.feed.window(Duration::from_secs(60), now),
        deployments,
        backends,
        recent: st.obs.feed.recent(feed::RECENT),
    }
}

fn frame(st: &AppState) -> Bytes {
    match serde_json::to_vec(&snapshot(st)) {
        Ok(json) => ferrogate_protocol::sse::data_frame(&json),
        Err(e) => {
            tracing::error!(error = %e, "dashboard snapshot does not serialize");
            Bytes::new()
        }
    }
}

/// One snapshot at once, then one per second until the client leaves or the server drains.
pub async fn events(State(st): State<AppState>) -> Response {
    let stop = st.stopping.clone();
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)));
    let frames = ticks.map(move |_| Ok::<_, Infallible>(frame(&st))).take_until(async move { stop.cancelled().await });
    let mut res = Body::from_stream(frames).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_policy_allows_exactly_its_own_inline_blocks() {
        let policy = csp(PAGE);
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(
            policy.matches("'sha256-").count(),
            PAGE.matches("<script>").count() + PAGE.matches("<style>").count()
        );
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{policy}");
        // A known hash: SHA-256 of "x", base64.
        assert_eq!(hashes("<style>x</style>", "style"), "'sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE='");
        assert_eq!(hashes("no blocks", "script"), "'none'");
    }
}
