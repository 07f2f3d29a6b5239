//! `GET /admin/v1/config`: the configuration in force — version, when it took effect, its
//! source file, and what changed since start that only a restart applies. Never a secret: the
//! snapshot's `ActiveConfig` holds names and paths only.

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::state::AppState;

/// The request's snapshot's configuration (a reload after this request started is not shown).
pub async fn show(State(st): State<AppState>) -> Json<Value> {
    Json(super::object("config", &st.config))
}
