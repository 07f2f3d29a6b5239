//! `POST /v1/responses`: the request body and its checks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::shape::check_model;
use super::super::{InvalidParam, check_max_tokens, check_range};
use super::call::{FunctionCallItem, FunctionCallOutputItem, ResponseItem, chat_tool_choice, chat_tools};
use super::item::{ItemRole, ItemStatus, MessageItem, Metadata, Part, check_metadata};

/// A Responses API request. Fields ferrogate acts on are typed; the rest (`reasoning`,
/// `include`, …) is kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: ResponseInput,
    /// A system message placed first in the model's context; not carried over to a later
    /// response that names this one in `previous_response_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Continue from a stored response: its input and output become history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Continue a stored conversation: its items become history and this turn is appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<ConversationRef>,
    /// Keep the response for later retrieval; OpenAI's default is `true` (see [`Self::stores`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Run asynchronously (needs `store`); handled by the jobs layer when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    /// What to do when the context is too long; ferrogate's default is `auto` (drop oldest turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text"}}` and friends; echoed in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseInput {
    Text(String),
    Items(Vec<InputItem>),
}

/// One input item: a message, a function call the model made (a previous output sent back), or
/// the output of a function the caller ran. The function items are tried first: their `type` is
/// fixed, while a message's is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputItem {
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    Message(InputMessage),
}

impl InputItem {
    /// The item as a response item (ids as the client sent them, possibly empty).
    pub fn to_item(&self) -> ResponseItem {
        match self {
            InputItem::FunctionCall(c) => ResponseItem::FunctionCall(c.clone()),
            InputItem::FunctionCallOutput(o) => ResponseItem::FunctionCallOutput(o.clone()),
            InputItem::Message(m) => {
                let mut item = MessageItem::new(m.id.clone().unwrap_or_default(), m.role, m.parts());
                item.status = m.status.unwrap_or_default();
                ResponseItem::Message(item)
            }
        }
    }
}

impl Default for ResponseInput {
    fn default() -> Self {
        ResponseInput::Text(String::new())
    }
}

/// One input message: `{"role", "content"}` (the "easy" form), or a full `message` item as a
/// previous response output it (with `type`, `id`, `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputMessage {
    /// `message` when given; other item types are not supported.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub role: ItemRole,
    pub content: InputContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
}

/// A message's `content`: a string, or a list of text parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputContent {
    Text(String),
    Parts(Vec<Part>),
}

impl InputMessage {
    /// The content as parts: a string becomes `output_text` for the assistant, `input_text`
    /// for everyone else.
    pub fn parts(&self) -> Vec<Part> {
        match &self.content {
            InputContent::Parts(p) => p.clone(),
            InputContent::Text(t) if self.role == ItemRole::Assistant => vec![Part::output_text(t.clone())],
            InputContent::Text(t) => vec![Part::InputText { text: t.clone() }],
        }
    }
}

/// `conversation`: an id, or an object carrying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConversationRef {
    Id(String),
    Object { id: String },
}

impl ConversationRef {
    /// The conversation's id, `conv_…`.
    pub fn id(&self) -> &str {
        match self {
            ConversationRef::Id(id) | ConversationRef::Object { id } => id,
        }
    }
}

/// `truncation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    /// Drop the oldest turns until the context fits.
    #[default]
    Auto,
    /// Refuse with 400 `context_length_exceeded`.
    Disabled,
}

impl ResponsesRequest {
    /// Semantic checks serde cannot express.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        check_model(&self.model)?;
        self.check_input()?;
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_max_tokens("max_output_tokens", self.max_output_tokens)?;
        if let Some(m) = &self.metadata {
            check_metadata(m)?;
        }
        if self.previous_response_id.is_some() && self.conversation.is_some() {
            let msg = "'previous_response_id' and 'conversation' cannot be used together";
            return Err(InvalidParam::new("conversation", msg));
        }
        if self.background == Some(true) && !self.stores() {
            return Err(InvalidParam::new("background", "background responses need 'store' to be true"));
        }
        self.chat_tools()?;
        self.chat_tool_choice()?;
        Ok(())
    }

    /// `tools` in chat's shape (function tools only), `None` when absent or empty.
    pub fn chat_tools(&self) -> Result<Option<Vec<Value>>, InvalidParam> {
        match self.tools.as_deref() {
            None | Some([]) => Ok(None),
            Some(tools) => chat_tools(tools).map(Some),
        }
    }

    /// `tool_choice` in chat's shape.
    pub fn chat_tool_choice(&self) -> Result<Option<Value>, InvalidParam> {
        self.tool_choice.as_ref().map(chat_tool_choice).transpose()
    }

    fn check_input(&self) -> Result<(), InvalidParam> {
        let items = match &self.input {
            ResponseInput::Text(t) if t.is_empty() => {
                return Err(InvalidParam::new("input", "'input' must not be empty"));
            }
            ResponseInput::Text(_) => return Ok(()),
            ResponseInput::Items(items) => items,
        };
        if items.is_empty() {
            return Err(InvalidParam::new("input", "'input' must contain at least one item"));
        }
        let unsupported =
            |i: &InputItem| matches!(i, InputItem::Message(m) if m.kind.as_deref().is_some_and(|k| k != "message"));
        match items.iter().position(unsupported) {
            Some(i) => {
                let msg = "only 'message', 'function_call' and 'function_call_output' items are supported";
                Err(InvalidParam::new(format!("input[{i}].type"), msg))
            }
            None => Ok(()),
        }
    }

    /// Whether the response is kept (`store` defaults to true).
    pub fn stores(&self) -> bool {
        self.store.unwrap_or(true)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The truncation policy asked for (default `auto`).
    pub fn truncation(&self) -> Truncation {
        self.truncation.unwrap_or_default()
    }

    /// The new input as items, in order (ids as the client sent them, possibly empty): a string
    /// is one user message.
    pub fn input_items(&self) -> Vec<ResponseItem> {
        match &self.input {
            ResponseInput::Text(t) => {
                vec![MessageItem::new("", ItemRole::User, vec![Part::InputText { text: t.clone() }]).into()]
            }
            ResponseInput::Items(items) => items.iter().map(InputItem::to_item).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> ResponsesRequest {
        serde_json::from_value(v).unwrap()
    }

    /// The API reference's first example: a string input.
    #[test]
    fn a_string_input_is_one_user_message() {
        let r = parse(json!({"model": "gpt-4.1", "input": "Tell me a three sentence bedtime story about a unicorn."}));
        assert!(r.validate().is_ok());
        assert!(r.stores(), "store defaults to true");
        assert_eq!(r.truncation(), Truncation::Auto);
        let items = r.input_items();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].role(), Some(ItemRole::User));
        assert_eq!(items[0].text(), "Tell me a three sentence bedtime story about a unicorn.");
    }

    /// Items in the easy form and in the full form a previous output used, mixed.
    #[test]
    fn message_items_in_both_forms() {
        let r = parse(json!({
            "model": "m",
            "instructions": "Talk like a pirate.",
            "input": [
                {"role": "developer", "content": "Be terse."},
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Arr.", "annotations": []}]},
                {"role": "user", "content": [{"type": "input_text", "text": "Are semicolons optional?"}]}
            ],
            "conversation": {"id": "conv_123"},
            "truncation": "disabled",
            "metadata": {"k": "v"},
            "reasoning": {"effort": "low"}
        }));
        assert!(r.validate().is_ok(), "{:?}", r.validate());
        let roles: Vec<_> = r.input_items().iter().filter_map(ResponseItem::role).collect();
        assert_eq!(roles, [ItemRole::Developer, ItemRole::Assistant, ItemRole::User]);
        assert_eq!(r.conversation.as_ref().unwrap().id(), "conv_123");
        assert_eq!(r.truncation(), Truncation::Disabled);
        assert!(r.extra.contains_key("reasoning"));
        let plain = parse(json!({"model": "m", "input": "x", "conversation": "conv_9"}));
        assert_eq!(plain.conversation.unwrap().id(), "conv_9");
    }

    #[test]
    fn validation_names_the_param() {
        let base = json!({"model": "m", "input": "hi"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(b).validate().unwrap_err().param
        };
        assert_eq!(with("temperature", json!(2.5)), "temperature");
        assert_eq!(with("max_output_tokens", json!(0)), "max_output_tokens");
        assert_eq!(with("input", json!("")), "input");
        assert_eq!(with("input", json!([])), "input");
        let other = json!([{"type": "reasoning", "role": "user", "content": "x"}]);
        assert_eq!(with("input", other), "input[0].type");
        assert_eq!(with("tools", json!([{"type": "web_search_preview"}])), "tools[0].type");
        assert_eq!(with("tool_choice", json!("never")), "tool_choice");
        let mut both = base.clone();
        both["previous_response_id"] = json!("resp_1");
        both["conversation"] = json!("conv_1");
        assert_eq!(parse(both).validate().unwrap_err().param, "conversation");
        let mut bg = base;
        bg["background"] = json!(true);
        bg["store"] = json!(false);
        assert_eq!(parse(bg).validate().unwrap_err().param, "background");
    }

    /// Continuing after a function call: the call sent back, then its output.
    #[test]
    fn function_items_in_input() {
        let r = parse(json!({"model": "m", "input": [
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
        ], "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
           "tool_choice": {"type": "function", "name": "get_weather"}}));
        assert!(r.validate().is_ok(), "{:?}", r.validate());
        let items = r.input_items();
        assert!(matches!(&items[1], ResponseItem::FunctionCall(c) if c.call_id == "call_1"));
        assert!(matches!(&items[2], ResponseItem::FunctionCallOutput(o) if o.output == "18C"));
        assert_eq!(r.chat_tools().unwrap().unwrap()[0]["function"]["name"], "get_weather");
        assert_eq!(r.chat_tool_choice().unwrap().unwrap()["function"]["name"], "get_weather");
    }

    #[test]
    fn unknown_truncation_and_non_text_parts_are_refused() {
        let bad = json!({"model": "m", "input": "x", "truncation": "middle"});
        assert!(serde_json::from_value::<ResponsesRequest>(bad).is_err());
        let image =
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]});
        assert!(serde_json::from_value::<ResponsesRequest>(image).is_err());
    }
}
