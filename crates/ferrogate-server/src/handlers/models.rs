//! `GET /v1/models` and `GET /v1/models/{id}`: deployments and their aliases.

use axum::Json;
use axum::extract::{Path, State};
use ferrogate_core::GatewayError;
use ferrogate_protocol::openai::{Model, ModelList};

use crate::error::ApiError;
use crate::state::AppState;

const OWNER: &str = "ferrogate";

pub async fn list(State(st): State<AppState>) -> Json<ModelList> {
    let data = st
        .registry
        .deployments()
        .iter()
        .flat_map(|d| std::iter::once(&d.name).chain(&d.aliases).map(|n| Model::new(n.clone(), d.created, OWNER)))
        .collect();
    Json(ModelList::new(data))
}

pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Model>, ApiError> {
    let d = st.registry.resolve(&id).ok_or(GatewayError::ModelNotFound(id.clone()))?;
    Ok(Json(Model::new(id, d.created, OWNER)))
}
