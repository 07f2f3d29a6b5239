//! What Ollama clients send: `/api/chat` and `/api/generate` bodies with Ollama's `options`,
//! `format`, `keep_alive`, `images` and tools.
//!
//! Invariant: `stream` defaults to true, as in Ollama; every Modelfile option parses (those that
//! only matter when loading a model, such as `num_ctx`, are kept in `rest` and ignored).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    /// Empty: a request to load (or, with `keep_alive: 0`, unload) the model.
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RequestOptions>,
    /// OpenAI-shaped function tools, as Ollama takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// How long the model stays loaded (`"5m"`, seconds, `-1`): accepted, ferrogate manages that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    /// Reasoning models' thinking switch: accepted, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
}

/// `POST /api/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub model: String,
    /// Empty (or absent): a request to load (or unload) the model.
    #[serde(default)]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Base64 images (no `data:` prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub stream: bool,
    /// The prompt is used as is, without the chat template.
    #[serde(default)]
    pub raw: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RequestOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// Fill-in-the-middle text after the answer: not served (refused by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// A prompt template overriding the model's: not served (refused by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Deprecated conversation memory from an earlier answer: ferrogate never returns one, so a
    /// non-empty one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<i64>>,
}

fn yes() -> bool {
    true
}

/// A chat message as Ollama clients send and receive it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    /// `[{"function": {"name", "arguments": {…}}}]`: arguments as an object, not JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// On `tool` messages: which tool answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

/// An Ollama tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub function: ToolCallFunction,
}

/// The function an Ollama tool call names, with its arguments as an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
    /// Position of the call in the answer (newer Ollama versions write it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// `options`: the per-request Modelfile parameters ferrogate acts on, and the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestOptions {
    /// Most tokens to generate; `-1` (endless) and `-2` (fill the context) mean no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Load-time and unsupported options (`num_ctx`, `num_gpu`, `mirostat`, `typical_p`, …):
    /// accepted, not acted on; the edge may log [`RequestOptions::ignored`].
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RequestOptions {
    /// The names of the options that are accepted but not acted on.
    pub fn ignored(&self) -> impl Iterator<Item = &str> {
        self.rest.keys().map(String::as_str)
    }
}

impl ChatRequest {
    /// Empty `messages`: Ollama's way to load a model (`keep_alive: 0`: to unload it).
    pub fn is_load_request(&self) -> bool {
        self.messages.is_empty()
    }
}

impl GenerateRequest {
    /// Empty `prompt`: Ollama's way to load a model (`keep_alive: 0`: to unload it).
    pub fn is_load_request(&self) -> bool {
        self.prompt.is_empty() && self.images.as_ref().is_none_or(Vec::is_empty)
    }
}

/// `keep_alive: 0` (or `"0"`, `"0s"`) asks to unload the model.
pub fn is_unload(keep_alive: Option<&Value>) -> bool {
    match keep_alive {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => matches!(s.trim(), "0" | "0s" | "0m" | "0h"),
        _ => false,
    }
}
