//! `GET /v1/models` and `GET /v1/models/{id}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// ferrogate's extension: `loaded`, `loading` or `unloaded` for a model whose backends load
    /// and unload it (the embedded engine); absent when no backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl Model {
    /// With the load state of the model shown (`loaded`, `loading`, `unloaded`).
    pub fn with_state(mut self, state: Option<&str>) -> Self {
        self.state = state.map(str::to_owned);
        self
    }

    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        Self { id: id.into(), object: "model".into(), created, owned_by: owned_by.into(), state: None }
    }
}

impl ModelList {
    pub fn new(data: Vec<Model>) -> Self {
        Self { object: "list".into(), data }
    }
}
