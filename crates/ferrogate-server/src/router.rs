//! The route table and the generic HTTP stages, in request order. LLM concerns (route, admit,
//! execute, settle) are not layers: they run in the handlers through `pipeline`.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::handlers::dashboard;
use crate::handlers::ollama::{self, models as ollama_models};
use crate::handlers::{
    anthropic, chat, completions, conversations as convs, embeddings, health, models, responses, simple,
};
use crate::state::AppState;
use crate::{access, admin, entry};

pub fn router(st: AppState) -> Router {
    router_gated(st, None)
}

/// [`router`], with `server.tls.admin_requires_client_cert`'s gate (`Some`) inside the access
/// stage (which also shapes errors per protocol), so its refusals are logged and counted like
/// any other.
pub fn router_gated(st: AppState, gate: Option<crate::tls::gate::Gate>) -> Router {
    let stages = ServiceBuilder::new()
        // 1 request id, trace, access log, metrics; errors in the route's protocol shape
        .layer(from_fn_with_state(st.clone(), access::layer))
        .layer(CatchPanicLayer::custom(on_panic)) // 2 a bug answers 500, never drops the connection
        // 2b mTLS-only paths (admin, metrics): a stage only when configured
        .option_layer(gate.map(|g| from_fn_with_state(g, crate::tls::gate::check)))
        // 3 draining → 503; client IP and rate-limit headers; who is calling; the body, bounded
        .layer(from_fn_with_state(st.clone(), entry::layer))
        .layer(DefaultBodyLimit::max(st.settings.body_limit));
    let routes = Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama_models::tags))
        .route("/api/show", post(ollama_models::show))
        .route("/api/ps", get(ollama_models::ps))
        .route("/api/version", get(ollama_models::version))
        .route("/api/embed", post(ollama_models::embed))
        .route("/api/embeddings", post(ollama_models::embeddings))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::retrieve).delete(responses::delete))
        .route("/v1/responses/{id}/input_items", get(responses::input_items))
        .route("/v1/conversations", post(convs::create))
        .route("/v1/conversations/{id}", get(convs::retrieve).post(convs::update).delete(convs::delete))
        .route("/v1/conversations/{id}/items", get(convs::list_items).post(convs::add_items))
        .route("/v1/conversations/{id}/items/{item_id}", get(convs::get_item).delete(convs::delete_item))
        .route("/generate", post(simple::generate))
        .route("/stream", post(simple::stream))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready));
    // Tenancy on: the admin API (master key) and the client's own usage report.
    let routes = match st.tenancy {
        Some(_) => routes.merge(admin::routes()).route("/v1/usage", get(admin::usage::client)),
        None => routes,
    };
    let routes = crate::jobs::routes::mount(&st, routes);
    let routes = observability_routes(&st, routes);
    routes.fallback(not_found).method_not_allowed_fallback(method_not_allowed).layer(stages).with_state(st)
}

/// `/metrics` (unless it has its own listener) and the live dashboard, as configured.
fn observability_routes(st: &AppState, routes: Router<AppState>) -> Router<AppState> {
    let cfg = &st.obs.cfg;
    let routes = match cfg.metrics.enabled && cfg.metrics_listen.is_none() {
        true => routes.route(dashboard::METRICS, get(dashboard::metrics)),
        false => routes,
    };
    match cfg.dashboard.enabled {
        true => routes
            .route(dashboard::DASHBOARD, get(dashboard::page))
            .route(dashboard::DASHBOARD_EVENTS, get(dashboard::events)),
        false => routes,
    }
}

/// The separate `/metrics` listener (`metrics.listen`): that route only, no auth.
pub fn metrics_router(st: AppState) -> Router {
    Router::new().route(dashboard::METRICS, get(dashboard::metrics)).with_state(st)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::route_not_found(req.uri().path())
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}
