//! `MessagesRequest` → `ChatCompletionRequest`, the gateway's pivot: checked first with
//! Anthropic's own field names, then translated field by field.
//!
//! | Anthropic | OpenAI |
//! |---|---|
//! | `system` (string or text blocks) | a leading `system` message |
//! | `tool_result` blocks | `tool` messages (`tool_call_id` = `tool_use_id`) |
//! | `tool_use` blocks | the assistant message's `tool_calls` (`input` as JSON text) |
//! | `tools[].input_schema` | `tools[].function.parameters` |
//! | `tool_choice` auto / any / tool / none | `"auto"` / `"required"` / `{function}` / `"none"` |
//! | `disable_parallel_tool_use: true` | `parallel_tool_calls: false` |
//! | `stop_sequences` | `stop` |
//! | `metadata.user_id` | `user` |
//! | `stream: true` | `stream: true` with `stream_options.include_usage` (for `message_delta`) |

use serde_json::{Map, Value, json};

use super::messages::{first_key, system_message, turn};
use super::request::{CountTokensRequest, MessagesRequest, SystemPrompt, Thinking, Tool, ToolChoice};
use crate::openai::shape::{self, MAX_STOP_SEQUENCES, clip};
use crate::openai::{ChatCompletionRequest, ChatMessage, InvalidParam, Stop, StreamOptions, check_range};

/// Top-level fields accepted and ignored: they only steer Anthropic's own infrastructure.
const IGNORED_FIELDS: &[&str] = &["service_tier"];
/// Longest `metadata.user_id` passed on as OpenAI's `user`, in bytes.
const MAX_USER_ID_BYTES: usize = 256;

impl MessagesRequest {
    /// Checks serde cannot express, with Anthropic's field names.
    pub fn validate(&self) -> Result<(), InvalidParam> {
        shape::check_model(&self.model)?;
        if self.max_tokens == 0 {
            return Err(InvalidParam::new("max_tokens", "'max_tokens' must be at least 1"));
        }
        if self.messages.is_empty() {
            return Err(InvalidParam::new("messages", "'messages' must contain at least one message"));
        }
        check_range("temperature", self.temperature, 0.0, 1.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_stop_sequences(self.stop_sequences.as_deref())?;
        check_user_id(self.metadata.as_ref().and_then(|m| m.user_id.as_deref()))?;
        check_unsupported(&self.extra, self.thinking.as_ref())
    }

    /// The request as the OpenAI chat request every backend serves; validates first.
    pub fn to_chat_request(&self) -> Result<ChatCompletionRequest, InvalidParam> {
        self.validate()?;
        let mut out = prompt(&self.model, self.system.as_ref(), &self.messages, self.tools.as_deref())?;
        apply_tool_choice(&mut out, self.tool_choice.as_ref(), self.tools.as_deref())?;
        out.max_tokens = Some(self.max_tokens);
        out.temperature = self.temperature;
        out.top_p = self.top_p;
        out.top_k = self.top_k.map(|k| i32::try_from(k).unwrap_or(i32::MAX));
        out.stop = self.stop_sequences.clone().filter(|s| !s.is_empty()).map(Stop::Many);
        out.user = self.metadata.as_ref().and_then(|m| m.user_id.clone());
        if self.is_stream() {
            out.stream = Some(true);
            out.stream_options = Some(StreamOptions { include_usage: true });
        }
        Ok(out)
    }
}

impl CountTokensRequest {
    /// The prompt as an OpenAI chat request (no output budget), for counting its tokens the way
    /// the deployment's backend would see them.
    pub fn to_chat_request(&self) -> Result<ChatCompletionRequest, InvalidParam> {
        shape::check_model(&self.model)?;
        if self.messages.is_empty() {
            return Err(InvalidParam::new("messages", "'messages' must contain at least one message"));
        }
        check_unsupported(&self.extra, self.thinking.as_ref())?;
        let mut out = prompt(&self.model, self.system.as_ref(), &self.messages, self.tools.as_deref())?;
        apply_tool_choice(&mut out, self.tool_choice.as_ref(), self.tools.as_deref())?;
        Ok(out)
    }
}

/// Model, messages and tools: what both requests share.
fn prompt(
    model: &str,
    system: Option<&SystemPrompt>,
    messages: &[super::request::InputMessage],
    tools: Option<&[Tool]>,
) -> Result<ChatCompletionRequest, InvalidParam> {
    let mut chat: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        let message = system_message(system)?;
        if !message.text().is_empty() {
            chat.push(message);
        }
    }
    for (i, m) in messages.iter().enumerate() {
        chat.extend(turn(i, m)?);
    }
    let tools = match tools {
        Some(tools) if !tools.is_empty() => {
            Some(Value::Array(tools.iter().enumerate().map(|(i, t)| function_tool(i, t)).collect::<Result<_, _>>()?))
        }
        _ => None,
    };
    Ok(ChatCompletionRequest { model: model.to_owned(), messages: chat, tools, ..ChatCompletionRequest::default() })
}

fn check_stop_sequences(stop: Option<&[String]>) -> Result<(), InvalidParam> {
    let Some(stop) = stop else { return Ok(()) };
    if stop.len() > MAX_STOP_SEQUENCES {
        let msg = format!("at most {MAX_STOP_SEQUENCES} stop sequences are supported, got {}", stop.len());
        return Err(InvalidParam::new("stop_sequences", msg));
    }
    shape::check_stop(Some(&Stop::Many(stop.to_vec()))).map_err(|e| InvalidParam::new("stop_sequences", e.message))
}

fn check_user_id(user_id: Option<&str>) -> Result<(), InvalidParam> {
    match user_id {
        Some(id) if id.len() > MAX_USER_ID_BYTES => Err(InvalidParam::new(
            "metadata.user_id",
            format!("'metadata.user_id' is at most {MAX_USER_ID_BYTES} bytes long: '{}'", clip(id)),
        )),
        _ => Ok(()),
    }
}

/// Unknown top-level fields and extended thinking are refused by name.
fn check_unsupported(extra: &Map<String, Value>, thinking: Option<&Thinking>) -> Result<(), InvalidParam> {
    if let Some(field) = first_key(extra, IGNORED_FIELDS) {
        let field = clip(&field);
        return Err(InvalidParam::new(field.clone(), format!("'{field}' is not supported by this gateway")));
    }
    match thinking {
        Some(t) if t.kind != "disabled" => {
            Err(InvalidParam::new("thinking", "extended thinking is not supported: omit 'thinking' or disable it"))
        }
        _ => Ok(()),
    }
}

/// A client tool as an OpenAI function tool; server tools (a versioned `type`) are refused.
fn function_tool(i: usize, tool: &Tool) -> Result<Value, InvalidParam> {
    if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
        let msg = format!("server tools ('{}') are not supported: only client tools with an input_schema", clip(kind));
        return Err(InvalidParam::new(format!("tools[{i}].type"), msg));
    }
    let Some(schema) = &tool.input_schema else {
        return Err(InvalidParam::new(format!("tools[{i}].input_schema"), "client tools need an 'input_schema'"));
    };
    let mut function = json!({"name": tool.name, "parameters": schema});
    if let Some(description) = &tool.description {
        function["description"] = Value::String(description.clone());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn apply_tool_choice(
    out: &mut ChatCompletionRequest,
    choice: Option<&ToolChoice>,
    tools: Option<&[Tool]>,
) -> Result<(), InvalidParam> {
    let Some(choice) = choice else { return Ok(()) };
    let (value, no_parallel) = match choice {
        ToolChoice::Auto { disable_parallel_tool_use: p } => (json!("auto"), *p),
        ToolChoice::Any { disable_parallel_tool_use: p } => (json!("required"), *p),
        ToolChoice::None => (json!("none"), None),
        ToolChoice::Tool { name, disable_parallel_tool_use: p } => {
            if !tools.unwrap_or_default().iter().any(|t| &t.name == name) {
                let msg = format!("tool_choice names '{}', which is not in 'tools'", clip(name));
                return Err(InvalidParam::new("tool_choice.name", msg));
            }
            (json!({"type": "function", "function": {"name": name}}), *p)
        }
    };
    if out.tools.is_none() {
        // OpenAI refuses a tool_choice without tools; without tools there is nothing to choose.
        return Ok(());
    }
    out.tool_choice = Some(value);
    if no_parallel == Some(true) {
        out.extra.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
    }
    Ok(())
}
