//! The response object (`object: "response"`), its usage and error, and the deleted marker.
//!
//! Every field the official SDKs require is always written (`tools: []`, `tool_choice: "auto"`,
//! `parallel_tool_calls`, `text`), and nullable fields are written as `null`, as OpenAI does.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::super::usage::Usage;
use super::call::ResponseItem;
use super::item::Metadata;
use super::request::{ResponsesRequest, Truncation};

/// `status` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    Queued,
    InProgress,
    Completed,
    Incomplete,
    Failed,
    Cancelled,
}

/// Why a response stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    pub reason: String,
}

/// Why a response failed: `code` is OpenAI's (`server_error`, `rate_limit_exceeded`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Prompt tokens served from a prefix cache (the embedded engine's KV cache, or the
    /// upstream's).
    #[serde(default)]
    pub cached_tokens: u32,
    /// Prompt tokens written to an explicit prompt cache; the current SDK requires the key.
    /// ferrogate has no explicit prompt cache: always 0.
    #[serde(default)]
    pub cache_write_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u32,
}

/// Token usage in the Responses API's vocabulary (input/output instead of prompt/completion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

impl From<Usage> for ResponseUsage {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: u.cached_tokens(), cache_write_tokens: 0 },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// `{"id": "conv_…"}` in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationId {
    pub id: String,
}

/// The response object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    pub status: ResponseStatus,
    pub model: String,
    pub output: Vec<ResponseItem>,
    pub usage: Option<ResponseUsage>,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub metadata: Metadata,
    pub previous_response_id: Option<String>,
    pub conversation: Option<ConversationId>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub text: Value,
    pub truncation: Truncation,
    pub store: bool,
    pub background: bool,
    pub user: Option<String>,
}

impl Response {
    /// An `in_progress` response with no output yet, echoing the request's parameters.
    /// `model` is the name the caller asked for.
    pub fn started(id: impl Into<String>, created_at: u64, req: &ResponsesRequest) -> Self {
        Self {
            id: id.into(),
            object: "response".into(),
            created_at,
            status: ResponseStatus::InProgress,
            model: req.model.clone(),
            output: Vec::new(),
            usage: None,
            error: None,
            incomplete_details: None,
            instructions: req.instructions.clone(),
            metadata: req.metadata.clone().unwrap_or_default(),
            previous_response_id: req.previous_response_id.clone(),
            conversation: req.conversation.as_ref().map(|c| ConversationId { id: c.id().to_owned() }),
            max_output_tokens: req.max_output_tokens,
            temperature: req.temperature,
            top_p: req.top_p,
            tools: req.tools.clone().unwrap_or_default(),
            tool_choice: req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
            text: req.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
            truncation: req.truncation(),
            store: req.stores(),
            background: req.background.unwrap_or(false),
            user: req.user.clone(),
        }
    }

    /// The text of every output message, joined: what the SDKs' `output_text` property shows.
    pub fn output_text(&self) -> String {
        self.output.iter().map(ResponseItem::text).collect()
    }
}

/// `DELETE /v1/responses/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseDeleted {
    pub id: String,
    /// Always `response.deleted`.
    pub object: String,
    pub deleted: bool,
}

impl ResponseDeleted {
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), object: "response.deleted".into(), deleted: true }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::super::item::{ItemRole, MessageItem, Part};
    use super::*;

    /// The SDK's `Response` model requires these keys; a missing one breaks `client.responses`.
    #[test]
    fn every_key_the_sdk_requires_is_written() {
        let req: ResponsesRequest = serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap();
        let mut r = Response::started("resp_1", 1_741_476_542, &req);
        r.output.push(MessageItem::new("msg_1", ItemRole::Assistant, vec![Part::output_text("Hello")]).into());
        r.status = ResponseStatus::Completed;
        let v = serde_json::to_value(&r).unwrap();
        for key in ["id", "object", "created_at", "model", "output", "parallel_tool_calls", "tool_choice", "tools"] {
            assert!(!v[key].is_null(), "{key} missing: {v}");
        }
        for key in ["error", "incomplete_details", "usage", "previous_response_id", "instructions"] {
            assert!(v.as_object().unwrap().contains_key(key), "{key} written as null");
        }
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["text"], json!({"format": {"type": "text"}}));
        assert_eq!(v["output"][0]["content"][0], json!({"type": "output_text", "text": "Hello", "annotations": []}));
        assert_eq!(r.output_text(), "Hello");
    }

    /// The API reference's response example (trimmed of fields ferrogate does not model) reads.
    #[test]
    fn the_documented_response_reads() {
        let doc = json!({
            "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
            "object": "response", "created_at": 1741476542, "status": "completed", "error": null,
            "incomplete_details": null, "instructions": null, "max_output_tokens": null, "model": "gpt-4.1-2025-04-14",
            "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "In a peaceful grove...", "annotations": []}]}],
            "parallel_tool_calls": true, "previous_response_id": null, "store": true, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "background": false, "conversation": null,
            "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123},
            "user": null, "metadata": {}
        });
        let r: Response = serde_json::from_value(doc).unwrap();
        assert_eq!(r.usage.unwrap().total_tokens, 123);
        assert_eq!(r.output_text(), "In a peaceful grove...");
    }

    #[test]
    fn chat_usage_maps_to_input_and_output_tokens() {
        let u = ResponseUsage::from(Usage::new(30, 7, Some(24)));
        assert_eq!((u.input_tokens, u.output_tokens, u.total_tokens), (30, 7, 37));
        assert_eq!(u.input_tokens_details.cached_tokens, 24);
    }
}
