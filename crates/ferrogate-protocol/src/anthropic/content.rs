//! Content blocks, the unit of Anthropic messages both ways: `text`, `image`, `tool_use`,
//! `tool_result` (and `thinking` blocks a client may echo back in its history).
//!
//! Invariant: the same [`ContentBlock`] type is read from clients and written in responses and
//! stream events; optional fields are left out when absent, so written blocks are exactly
//! Anthropic's (`{"type":"text","text":"…"}`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A block ferrogate understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
        /// Prompt caching hints are accepted and ignored (no prompt cache to steer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Value>,
    },
    Image {
        source: ImageSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolUse {
        id: String,
        name: String,
        /// The arguments: a JSON object.
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_control: Option<Value>,
    },
    /// The model's earlier reasoning, echoed back by clients; dropped in translation.
    Thinking {
        thinking: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
}

impl ContentBlock {
    /// A text block as written in responses.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text { text: text.into(), cache_control: None, citations: None }
    }

    /// A `tool_use` block as written in responses.
    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        ContentBlock::ToolUse { id: id.into(), name: name.into(), input, cache_control: None }
    }

    /// The block's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ContentBlock::Text { .. } => "text",
            ContentBlock::Image { .. } => "image",
            ContentBlock::ToolUse { .. } => "tool_use",
            ContentBlock::ToolResult { .. } => "tool_result",
            ContentBlock::Thinking { .. } => "thinking",
            ContentBlock::RedactedThinking { .. } => "redacted_thinking",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

impl ImageSource {
    /// The image as the URL OpenAI's `image_url` part takes (a `data:` URL for base64).
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
            ImageSource::Url { url } => url.clone(),
        }
    }
}

/// A `tool_result`'s `content`: a string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<InputBlock>),
}

/// A block as a client sent it: one ferrogate understands, or any other `{"type": …}` object,
/// kept so the translation can name it when refusing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputBlock {
    Known(ContentBlock),
    Other(OtherBlock),
}

impl InputBlock {
    /// The block's `type` as sent.
    pub fn kind(&self) -> &str {
        match self {
            InputBlock::Known(b) => b.kind(),
            InputBlock::Other(o) => &o.kind,
        }
    }
}

/// A block of a type ferrogate does not serve (`document`, `search_result`, `server_tool_use`,
/// …), or a known type with missing or mistyped fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    #[test]
    fn written_blocks_carry_only_anthropic_fields() {
        let text = serde_json::to_value(ContentBlock::text("hi")).unwrap();
        assert_eq!(text, json!({"type": "text", "text": "hi"}));
        let tool = serde_json::to_value(ContentBlock::tool_use("toolu_1", "f", json!({}))).unwrap();
        assert_eq!(tool, json!({"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}));
    }

    #[test]
    fn unknown_and_malformed_blocks_are_kept_with_their_type() {
        let doc: InputBlock = serde_json::from_value(json!({"type": "document", "source": {}})).unwrap();
        assert_eq!(doc.kind(), "document");
        let bad: InputBlock = serde_json::from_value(json!({"type": "tool_use", "id": "x"})).unwrap();
        assert!(matches!(&bad, InputBlock::Other(o) if o.kind == "tool_use"));
        let img: InputBlock = serde_json::from_value(
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}),
        )
        .unwrap();
        let InputBlock::Known(ContentBlock::Image { source, .. }) = img else { panic!("{img:?}") };
        assert_eq!(source.to_url(), "data:image/png;base64,AAAA");
    }
}
