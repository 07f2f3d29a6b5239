//! The routes of background work, mounted when the composition root built its services: OpenAI
//! Files, Batches and background responses' cancel for tenants' keys, the DLQ and webhook endpoints for the master key.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::admin::{dlq, webhooks};
use crate::handlers::{background, batches, files};
use crate::state::AppState;

pub fn mount(st: &AppState, routes: Router<AppState>) -> Router<AppState> {
    if st.jobs.is_none() {
        return routes;
    }
    routes
        // The body layer bounded the upload already, by `[batches] max_file_bytes` (not
        // `server.body_limit_bytes`, the extractor's default bound).
        .route("/v1/files", post(files::upload).layer(DefaultBodyLimit::disable()).get(files::list))
        .route("/v1/files/{id}", get(files::get).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", post(batches::create).get(batches::list))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/responses/{id}/cancel", post(background::cancel))
        .route("/admin/v1/dlq", get(dlq::list))
        .route("/admin/v1/dlq/replay", post(dlq::replay_all))
        .route("/admin/v1/dlq/purge", post(dlq::purge))
        .route("/admin/v1/dlq/{id}", get(dlq::get).delete(dlq::delete))
        .route("/admin/v1/dlq/{id}/replay", post(dlq::replay))
        .route("/admin/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/admin/v1/webhooks/{id}", get(webhooks::get).delete(webhooks::delete))
        .route("/admin/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
}
