//! `POST /v1/chat/completions`: request, response and stream chunk.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::shape;
use super::{FinishReason, InvalidParam, Stop, StreamOptions, Usage, check_max_tokens, check_n, check_range};

/// A chat completion request. Fields ferrogate acts on are typed; everything else a client
/// sends (tools, response_format, logit_bias, …) is kept in `extra` and passed to HTTP upstreams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Extensions that vLLM, llama.cpp server and Ollama accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// Semantic checks serde cannot express. Caps that depend on the deployment are not here.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        shape::check_model(&self.model)?;
        if self.messages.is_empty() {
            return Err(InvalidParam::new("messages", "'messages' must contain at least one message"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            m.validate().map_err(|e| InvalidParam::new(format!("messages[{i}].{}", e.param), e.message))?;
        }
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_range("min_p", self.min_p, 0.0, 1.0)?;
        check_range("repetition_penalty", self.repetition_penalty, 0.0, 10.0)?;
        check_max_tokens("max_tokens", self.max_tokens)?;
        check_max_tokens("max_completion_tokens", self.max_completion_tokens)?;
        shape::check_stop(self.stop.as_ref())?;
        shape::check_extra(&self.extra)?;
        check_n(self.n)?;
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(InvalidParam::new("stream_options", "'stream_options' is only allowed when 'stream' is true"));
        }
        Ok(())
    }

    /// The configurable bounds: how many messages, how large each (see [`shape`]).
    pub fn check_shape(&self, limits: &shape::ShapeLimits) -> Result<(), InvalidParam> {
        shape::check_messages(&self.messages, limits)
    }

    /// `max_completion_tokens` supersedes the deprecated `max_tokens`.
    pub fn effective_max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }

    fn validate(&self) -> Result<(), InvalidParam> {
        match self.role {
            Role::Tool if self.tool_call_id.is_none() => {
                Err(InvalidParam::new("tool_call_id", "messages with role 'tool' need 'tool_call_id'"))
            }
            Role::Assistant => Ok(()),
            _ if self.content.is_none() => {
                Err(InvalidParam::new("content", format!("messages with role '{}' need 'content'", self.role.as_str())))
            }
            _ => Ok(()),
        }
    }

    /// The text of the message; content parts of type `text` are joined, others skipped.
    pub fn text(&self) -> String {
        self.content.as_ref().map(MessageContent::text).unwrap_or_default()
    }

    /// True when the message carries parts that are not text (images, audio, files).
    pub fn has_non_text_parts(&self) -> bool {
        matches!(&self.content, Some(MessageContent::Parts(p)) if p.iter().any(|p| p.kind != "text"))
    }
}

/// `content`: a string, or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(s) => s.clone(),
            MessageContent::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join(""),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Non-streaming response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    #[serde(default)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub role: Role,
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    pub refusal: Option<String>,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// `null` on content chunks when usage was requested, set on the final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn accepts_string_and_parts_content_and_keeps_unknown_fields() {
        let r = parse(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}
            ],
            "stop": "\n",
            "response_format": {"type": "json_object"}
        }));
        assert_eq!(r.messages[1].text(), "hi there");
        assert_eq!(r.stop, Some(Stop::One("\n".into())));
        assert!(r.extra.contains_key("response_format"));
        assert!(r.validate().is_ok());
    }

    #[test]
    fn validation_names_the_param() {
        let mut r = parse(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        r.temperature = Some(3.0);
        assert_eq!(r.validate().unwrap_err().param, "temperature");
        r.temperature = None;
        r.n = Some(2);
        assert_eq!(r.validate().unwrap_err().param, "n");
        r.n = None;
        r.messages.push(ChatMessage {
            role: Role::Tool,
            content: Some(MessageContent::Text("x".into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        });
        assert_eq!(r.validate().unwrap_err().param, "messages[1].tool_call_id");
    }

    #[test]
    fn empty_messages_rejected() {
        let r = parse(serde_json::json!({"model": "m", "messages": []}));
        assert_eq!(r.validate().unwrap_err().param, "messages");
    }

    #[test]
    fn chunk_usage_null_vs_absent() {
        let c = ChatCompletionChunk {
            id: "x".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: "m".into(),
            choices: vec![],
            usage: Some(None),
            system_fingerprint: None,
        };
        assert!(serde_json::to_string(&c).unwrap().contains("\"usage\":null"));
    }
}
