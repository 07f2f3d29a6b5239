//! The admin API under `/admin/v1`, guarded by the master key (the auth layer checks it):
//! tenants, keys and usage reports, described by `openapi.json` (served at
//! `/admin/v1/openapi.json`), which also describes the DLQ and webhook routes (`dlq`,
//! `webhooks`, mounted by `jobs::routes` when background work is on). Mounted only when tenancy
//! is on.
//!
//! Invariants: a key's plaintext appears only in the response to its creation or rotation;
//! every change to a key or tenant invalidates this instance's key cache at once (other
//! instances see it at their next poll); every error is OpenAI-shaped.

pub mod config;
pub mod dlq;
pub mod keys;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::Tenancy;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/tenants", get(tenants::list).post(tenants::create))
        .route("/admin/v1/tenants/{id}", get(tenants::get).patch(tenants::update).delete(tenants::delete))
        .route("/admin/v1/keys", get(keys::list).post(keys::create))
        .route("/admin/v1/keys/{id}", get(keys::get).patch(keys::update))
        .route("/admin/v1/keys/{id}/rotate", post(keys::rotate))
        .route("/admin/v1/keys/{id}/revoke", post(keys::revoke))
        .route("/admin/v1/usage", get(usage::admin))
        .route("/admin/v1/config", get(config::show))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The tenancy service; present whenever these routes are mounted.
pub(crate) fn tenancy(st: &AppState) -> Result<&Arc<Tenancy>, ApiError> {
    st.tenancy.as_ref().ok_or_else(|| ApiError::internal("admin route without tenancy"))
}

/// `v` serialized with `"object": kind` added.
pub(crate) fn object(kind: &str, v: &impl Serialize) -> Value {
    let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("object".into(), Value::from(kind));
    }
    v
}

/// `{"object": "list", "data": [...]}`.
pub(crate) fn list(data: Vec<Value>) -> Value {
    serde_json::json!({ "object": "list", "data": data })
}

/// A query string that does not parse is a 400 naming the problem, in OpenAI shape.
pub(crate) fn query<T>(q: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|q| q.0).map_err(|e| ApiError::invalid(None, format!("Invalid query string: {}", e.body_text())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every route `routes()` mounts, with its methods: the OpenAPI file must describe each.
    const SERVED: &[(&str, &[&str])] = &[
        ("/admin/v1/openapi.json", &["get"]),
        ("/admin/v1/tenants", &["get", "post"]),
        ("/admin/v1/tenants/{id}", &["get", "patch", "delete"]),
        ("/admin/v1/keys", &["get", "post"]),
        ("/admin/v1/keys/{id}", &["get", "patch"]),
        ("/admin/v1/keys/{id}/rotate", &["post"]),
        ("/admin/v1/keys/{id}/revoke", &["post"]),
        ("/admin/v1/usage", &["get"]),
        ("/admin/v1/config", &["get"]),
        // Mounted by `jobs::routes` when background work is on.
        ("/admin/v1/dlq", &["get"]),
        ("/admin/v1/dlq/replay", &["post"]),
        ("/admin/v1/dlq/purge", &["post"]),
        ("/admin/v1/dlq/{id}", &["get", "delete"]),
        ("/admin/v1/dlq/{id}/replay", &["post"]),
        ("/admin/v1/webhooks", &["get", "post"]),
        ("/admin/v1/webhooks/{id}", &["get", "delete"]),
        ("/admin/v1/webhooks/{id}/deliveries", &["get"]),
    ];

    #[test]
    fn openapi_describes_every_route_and_only_those() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), SERVED.len(), "{:?}", paths.keys().collect::<Vec<_>>());
        for (path, methods) in SERVED {
            for m in *methods {
                let op = &paths[*path][*m];
                assert!(op["summary"].is_string() && op["responses"].is_object(), "{m} {path}");
            }
        }
        // Every $ref resolves.
        let text = OPENAPI.to_owned();
        for r in text.split("\"$ref\": \"#/").skip(1) {
            let target = &r[..r.find('"').unwrap()];
            let mut v = &doc;
            for part in target.split('/') {
                v = &v[part];
            }
            assert!(!v.is_null(), "dangling $ref {target}");
        }
    }
}
