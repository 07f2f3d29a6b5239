//! Ollama's model and embedding endpoints as ferrogate serves them: `GET /api/tags`,
//! `POST /api/show`, `GET /api/ps`, `GET /api/version`, `POST /api/embed` (and the older
//! `POST /api/embeddings`), and the error body `{"error": "…"}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListResponse {
    pub models: Vec<ListedModel>,
}

/// A model of `/api/tags`. Ollama writes both `name` and `model` (the same string).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListedModel {
    pub name: String,
    pub model: String,
    /// RFC 3339.
    pub modified_at: String,
    /// Bytes on disk (0 when unknown, e.g. a remote backend).
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
}

impl ListedModel {
    /// A model known by name only (size, digest and details unknown, as for a remote backend).
    pub fn named(name: impl Into<String>, modified_at: impl Into<String>) -> Self {
        let name = name.into();
        Self { model: name.clone(), name, modified_at: modified_at.into(), ..Self::default() }
    }
}

/// `details` of a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelDetails {
    #[serde(default)]
    pub parent_model: String,
    /// `gguf`.
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// `7B`.
    #[serde(default)]
    pub parameter_size: String,
    /// `Q4_0`.
    #[serde(default)]
    pub quantization_level: String,
}

/// `POST /api/show`. Older clients send `name` instead of `model`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowRequest {
    #[serde(default, alias = "name")]
    pub model: String,
    #[serde(default)]
    pub verbose: bool,
}

/// The answer of `/api/show`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowResponse {
    #[serde(default)]
    pub modelfile: String,
    #[serde(default)]
    pub parameters: String,
    #[serde(default)]
    pub template: String,
    pub details: ModelDetails,
    /// GGUF metadata (`general.architecture`, `llama.context_length`, …).
    #[serde(default)]
    pub model_info: Map<String, Value>,
    /// `completion`, `tools`, `embedding`, `vision`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_at: Option<String>,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsResponse {
    pub models: Vec<RunningModel>,
}

/// A loaded model of `/api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningModel {
    pub name: String,
    pub model: String,
    pub size: u64,
    pub digest: String,
    pub details: ModelDetails,
    /// RFC 3339: when the model would be unloaded.
    pub expires_at: String,
    pub size_vram: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
}

impl RunningModel {
    /// A loaded model known by name, kept loaded until `expires_at` (RFC 3339).
    pub fn named(name: impl Into<String>, expires_at: impl Into<String>) -> Self {
        let name = name.into();
        Self { model: name.clone(), name, expires_at: expires_at.into(), ..Self::default() }
    }
}

/// `GET /api/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
}

/// `POST /api/embed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    pub input: EmbedInput,
    /// Cut inputs longer than the context instead of failing (Ollama's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// `input`: one text or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

impl EmbedRequest {
    /// The texts to embed, in order.
    pub fn inputs(&self) -> Vec<&str> {
        match &self.input {
            EmbedInput::One(s) => vec![s.as_str()],
            EmbedInput::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Whether over-long inputs are cut (the default) rather than refused.
    pub fn truncates(&self) -> bool {
        self.truncate != Some(false)
    }
}

/// The answer of `/api/embed`: one vector per input, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub model: String,
    pub embeddings: Vec<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_count: Option<u32>,
}

/// `POST /api/embeddings` (superseded by `/api/embed`, still used by older clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyEmbeddingRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// The answer of `/api/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyEmbeddingResponse {
    pub embedding: Vec<f32>,
}
