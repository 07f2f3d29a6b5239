//! Function calling in the Responses API: the `function_call` item the model outputs, the
//! `function_call_output` item the caller sends back, the [`ResponseItem`] union every item list
//! holds, and the pure translations of `tools` / `tool_choice` to chat's shapes.
//!
//! Invariant: a function call's `call_id` is what ties the two items together (and becomes the
//! chat tool call's `id` / the tool message's `tool_call_id`); item ids (`fc_…`) only name items.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::super::InvalidParam;
use super::item::{ItemRole, ItemStatus, ListPage, MessageItem};

/// `"function_call"`: the only value a [`FunctionCallItem`]'s `type` takes (so an untagged
/// [`ResponseItem`] reads the right variant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionCallType {
    #[default]
    #[serde(rename = "function_call")]
    FunctionCall,
}

/// `"function_call_output"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionCallOutputType {
    #[default]
    #[serde(rename = "function_call_output")]
    FunctionCallOutput,
}

/// The model asks the caller to run a function. In input (a previous output sent back) `id` and
/// `status` may be absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallItem {
    #[serde(rename = "type")]
    pub kind: FunctionCallType,
    /// `fc_…` (empty in input that omitted it).
    #[serde(default)]
    pub id: String,
    /// Ties the call to its `function_call_output`.
    pub call_id: String,
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
    #[serde(default)]
    pub status: ItemStatus,
}

impl FunctionCallItem {
    pub fn new(id: impl Into<String>, call_id: impl Into<String>, name: impl Into<String>, arguments: &str) -> Self {
        Self {
            kind: FunctionCallType::FunctionCall,
            id: id.into(),
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.to_owned(),
            status: ItemStatus::Completed,
        }
    }

    /// The call in chat's shape (an entry of an assistant message's `tool_calls`).
    pub fn chat_tool_call(&self) -> Value {
        super::super::tools::function_call(&self.call_id, &self.name, &self.arguments)
    }
}

/// What the caller's function returned, sent back as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutputItem {
    #[serde(rename = "type")]
    pub kind: FunctionCallOutputType,
    /// `fco_…` once stored (empty in input that omitted it).
    #[serde(default)]
    pub id: String,
    /// The `call_id` of the function call this answers.
    pub call_id: String,
    /// The function's result, as text.
    pub output: String,
    #[serde(default)]
    pub status: ItemStatus,
}

impl FunctionCallOutputItem {
    pub fn new(id: impl Into<String>, call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            kind: FunctionCallOutputType::FunctionCallOutput,
            id: id.into(),
            call_id: call_id.into(),
            output: output.into(),
            status: ItemStatus::Completed,
        }
    }
}

/// Any item of a response's input or output, or of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponseItem {
    FunctionCall(FunctionCallItem),
    FunctionCallOutput(FunctionCallOutputItem),
    Message(MessageItem),
}

impl ResponseItem {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            ResponseItem::FunctionCall(c) => &c.id,
            ResponseItem::FunctionCallOutput(o) => &o.id,
            ResponseItem::Message(m) => &m.id,
        }
    }

    /// The item's status.
    pub fn status(&self) -> ItemStatus {
        match self {
            ResponseItem::FunctionCall(c) => c.status,
            ResponseItem::FunctionCallOutput(o) => o.status,
            ResponseItem::Message(m) => m.status,
        }
    }

    /// A message's role; `None` for function items.
    pub fn role(&self) -> Option<ItemRole> {
        match self {
            ResponseItem::Message(m) => Some(m.role),
            _ => None,
        }
    }

    /// A message's text (every part joined); empty for function items.
    pub fn text(&self) -> String {
        match self {
            ResponseItem::Message(m) => m.text(),
            _ => String::new(),
        }
    }
}

impl From<MessageItem> for ResponseItem {
    fn from(m: MessageItem) -> Self {
        ResponseItem::Message(m)
    }
}

impl ListPage<ResponseItem> {
    /// A page of items; the ids bracket `data`.
    pub fn of_items(data: Vec<ResponseItem>, has_more: bool) -> Self {
        let first_id = data.first().map(|i| i.id().to_owned());
        let last_id = data.last().map(|i| i.id().to_owned());
        Self { object: "list".into(), data, first_id, last_id, has_more }
    }
}

/// The id of the `n`-th function call item of the output whose message is `message_id`
/// (`msg_<hex>` → `fc_<hex><n as 8 hex digits>`): unique per response, with no generator needed.
pub fn call_item_id(message_id: &str, n: usize) -> String {
    let hex = message_id.strip_prefix("msg_").unwrap_or(message_id);
    format!("fc_{hex}{n:08x}")
}

/// The Responses API's function tools (`{"type": "function", "name", "description",
/// "parameters", "strict"}`) in chat's shape (`{"type": "function", "function": {…}}`).
/// Other tool types (web search, file search, …) are refused, naming the tool.
pub fn chat_tools(tools: &[Value]) -> Result<Vec<Value>, InvalidParam> {
    tools.iter().enumerate().map(|(i, t)| chat_tool(i, t)).collect()
}

fn chat_tool(i: usize, tool: &Value) -> Result<Value, InvalidParam> {
    let Some(obj) = tool.as_object() else {
        return Err(InvalidParam::new(format!("tools[{i}]"), "each tool must be an object"));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            let msg = format!("tool type '{other}' is not supported; only 'function' tools are");
            return Err(InvalidParam::new(format!("tools[{i}].type"), msg));
        }
        None => return Err(InvalidParam::new(format!("tools[{i}].type"), "each tool needs a 'type'")),
    }
    match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => {}
        _ => return Err(InvalidParam::new(format!("tools[{i}].name"), "function tools need a 'name'")),
    }
    let function: Map<String, Value> =
        obj.iter().filter(|(k, _)| *k != "type").map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(json!({"type": "function", "function": function}))
}

/// `tool_choice` in chat's shape: `"auto"`, `"none"` and `"required"` are the same;
/// `{"type": "function", "name"}` becomes `{"type": "function", "function": {"name"}}`.
pub fn chat_tool_choice(choice: &Value) -> Result<Value, InvalidParam> {
    let bad = || InvalidParam::new("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a function");
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The shapes of the API reference's function calling example.
    #[test]
    fn documented_function_items_read_and_round_trip() {
        let call = json!({"type": "function_call", "id": "fc_12345xyz", "call_id": "call_12345xyz",
            "name": "get_weather", "arguments": "{\"location\":\"Paris, France\"}", "status": "completed"});
        let item: ResponseItem = serde_json::from_value(call.clone()).unwrap();
        assert!(matches!(&item, ResponseItem::FunctionCall(c) if c.name == "get_weather"));
        assert_eq!(serde_json::to_value(&item).unwrap(), call);
        let out = json!({"type": "function_call_output", "call_id": "call_12345xyz", "output": "18C"});
        let item: ResponseItem = serde_json::from_value(out).unwrap();
        let ResponseItem::FunctionCallOutput(o) = item else { panic!("an output item") };
        assert_eq!((o.id.as_str(), o.status), ("", ItemStatus::Completed));
        let msg = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]});
        let item: ResponseItem = serde_json::from_value(msg).unwrap();
        assert_eq!((item.role(), item.text().as_str()), (Some(ItemRole::User), "hi"));
    }

    #[test]
    fn function_tools_become_chat_tools() {
        let tools = [json!({"type": "function", "name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {}}, "strict": true})];
        let chat = chat_tools(&tools).unwrap();
        assert_eq!(
            chat[0],
            json!({"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object", "properties": {}}, "strict": true}})
        );
        let web = [json!({"type": "web_search_preview"})];
        assert_eq!(chat_tools(&web).unwrap_err().param, "tools[0].type");
        let nameless = [json!({"type": "function"})];
        assert_eq!(chat_tools(&nameless).unwrap_err().param, "tools[0].name");
    }

    #[test]
    fn tool_choice_translates() {
        assert_eq!(chat_tool_choice(&json!("required")).unwrap(), json!("required"));
        let f = chat_tool_choice(&json!({"type": "function", "name": "f"})).unwrap();
        assert_eq!(f, json!({"type": "function", "function": {"name": "f"}}));
        assert!(chat_tool_choice(&json!("sometimes")).is_err());
        assert!(chat_tool_choice(&json!({"type": "file_search"})).is_err());
    }

    #[test]
    fn call_item_ids_derive_from_the_message_id() {
        assert_eq!(call_item_id("msg_0abc", 2), "fc_0abc00000002");
    }
}
