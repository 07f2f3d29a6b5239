//! `GET /v1/models` and `GET /v1/models/{id}`: deployments and their aliases, and the tiered
//! virtual model (`auto`) when it is on — for a key limited to some models, only those. A model
//! whose backends load and unload it (the embedded engine) carries its `state`.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use ferrogate_core::{Deployment, GatewayError, ModelState};
use ferrogate_protocol::openai::{Model, ModelList};

use crate::error::ApiError;
use crate::request::RequestCx;
use crate::state::AppState;

const OWNER: &str = "ferrogate";

pub async fn list(State(st): State<AppState>, Extension(cx): Extension<RequestCx>) -> Json<ModelList> {
    let mut data: Vec<Model> = st
        .registry
        .deployments()
        .iter()
        .flat_map(|d| std::iter::once(&d.name).chain(&d.aliases).map(move |n| (d, n)))
        .filter(|(d, n)| cx.caller.as_ref().is_none_or(|c| c.check_model(d, n).is_ok()))
        .map(|(d, n)| Model::new(n.clone(), d.created, OWNER).with_state(state_of(d)))
        .collect();
    if let Some(m) = virtual_model(&st, &cx) {
        data.push(m);
    }
    Json(ModelList::new(data))
}

/// The tiered virtual model, if on and the caller may use its small tier.
fn virtual_model(st: &AppState, cx: &RequestCx) -> Option<Model> {
    let t = st.tiers.as_ref()?;
    let d = st.registry.resolve(t.small())?;
    cx.caller
        .as_ref()
        .is_none_or(|c| c.check_model(d, &t.model).is_ok())
        .then(|| Model::new(t.model.clone(), d.created, OWNER).with_state(state_of(d)))
}

pub async fn get(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    if let Some(m) = virtual_model(&st, &cx).filter(|m| m.id == id) {
        return Ok(Json(m));
    }
    let d = st.registry.resolve(&id).ok_or(GatewayError::ModelNotFound(id.clone()))?;
    if let Some(c) = &cx.caller {
        c.check_model(d, &id)?;
    }
    Ok(Json(Model::new(id, d.created, OWNER).with_state(state_of(d))))
}

fn state_of(d: &Deployment) -> Option<&'static str> {
    super::model_state(d).map(ModelState::as_str)
}
