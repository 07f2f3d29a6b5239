//! Ollama client requests → the OpenAI pivot.
//!
//! | Ollama | OpenAI |
//! |---|---|
//! | `options.num_predict` (> 0; `-1`/`-2` = no limit) | `max_tokens` |
//! | `options.temperature`, `top_p`, `top_k`, `min_p`, `seed`, `stop` | the same fields |
//! | `options.repeat_penalty` / `presence_penalty` / `frequency_penalty` | `repetition_penalty` / … |
//! | `format: "json"` / `format: {schema}` | `response_format` `json_object` / `json_schema` |
//! | `images` (base64) | `image_url` parts with `data:` URLs |
//! | `tool_calls[].function.arguments` (object) | `tool_calls[].function.arguments` (JSON text), ids `call_N` |
//! | `tool` messages (`tool_name`) | `tool` messages, `tool_call_id` matched to the call |
//! | `/api/generate` `raw: true` | a legacy completion request (no template) |
//! | `/api/generate` `system` + `prompt` | a system and a user message |
//!
//! `keep_alive`, `think` and load-time options (`num_ctx`, …) are accepted and not acted on.

use serde_json::{Map, Value, json};

use super::request::{ChatMessage, ChatRequest, GenerateRequest, RequestOptions};
use crate::openai::tools::function_call;
use crate::openai::{
    self, ChatCompletionRequest, CompletionRequest, ContentPart, InvalidParam, MessageContent, PromptInput, Role, Stop,
    StreamOptions,
};

/// What a `/api/generate` request becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateTarget {
    /// A templated prompt: a chat request.
    Chat(ChatCompletionRequest),
    /// `raw: true`: the prompt as is, a legacy completion.
    Completion(CompletionRequest),
}

impl ChatRequest {
    /// The OpenAI chat request; validated, errors naming Ollama's fields.
    pub fn to_chat_request(&self) -> Result<ChatCompletionRequest, InvalidParam> {
        let mut out = ChatCompletionRequest {
            model: self.model.clone(),
            messages: messages(&self.messages)?,
            tools: self.tools.clone().filter(|t| !t.is_empty()).map(Value::Array),
            ..ChatCompletionRequest::default()
        };
        apply_common(&mut out, self.stream, self.options.as_ref(), self.format.as_ref())?;
        out.validate().map_err(ollama_names)?;
        Ok(out)
    }
}

impl GenerateRequest {
    /// A chat request, or a legacy completion for `raw: true`; validated.
    pub fn to_openai(&self) -> Result<GenerateTarget, InvalidParam> {
        refuse_nonempty("suffix", self.suffix.as_deref().is_some_and(|s| !s.is_empty()))?;
        refuse_nonempty("template", self.template.as_deref().is_some_and(|s| !s.is_empty()))?;
        refuse_nonempty("context", self.context.as_ref().is_some_and(|c| !c.is_empty()))?;
        if self.raw {
            return self.to_completion().map(GenerateTarget::Completion);
        }
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = self.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(openai::ChatMessage::new(Role::System, system));
        }
        messages.push(user_message(&self.prompt, self.images.as_deref().unwrap_or_default()));
        let mut out = ChatCompletionRequest { model: self.model.clone(), messages, ..ChatCompletionRequest::default() };
        apply_common(&mut out, self.stream, self.options.as_ref(), self.format.as_ref())?;
        out.validate().map_err(|e| match e.param.as_str() {
            p if p.starts_with("messages") => InvalidParam::new("prompt", e.message),
            _ => ollama_names(e),
        })?;
        Ok(GenerateTarget::Chat(out))
    }

    fn to_completion(&self) -> Result<CompletionRequest, InvalidParam> {
        if self.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return Err(InvalidParam::new("images", "images can not be sent with 'raw': true"));
        }
        if self.format.as_ref().is_some_and(|f| !is_no_format(f)) {
            return Err(InvalidParam::new("format", "'format' can not be used with 'raw': true"));
        }
        // Build through the chat shape so both share one options mapping.
        let mut chat = ChatCompletionRequest { model: self.model.clone(), ..ChatCompletionRequest::default() };
        apply_common(&mut chat, self.stream, self.options.as_ref(), None)?;
        let out = CompletionRequest {
            model: chat.model,
            prompt: PromptInput::One(self.prompt.clone()),
            max_tokens: chat.max_tokens,
            temperature: chat.temperature,
            top_p: chat.top_p,
            stop: chat.stop,
            seed: chat.seed,
            n: None,
            user: None,
            stream: chat.stream,
            stream_options: chat.stream_options,
            frequency_penalty: chat.frequency_penalty,
            presence_penalty: chat.presence_penalty,
            echo: None,
            top_k: chat.top_k,
            min_p: chat.min_p,
            repetition_penalty: chat.repetition_penalty,
            extra: Map::new(),
        };
        out.validate().map_err(ollama_names)?;
        Ok(out)
    }
}

fn refuse_nonempty(field: &str, present: bool) -> Result<(), InvalidParam> {
    match present {
        true => Err(InvalidParam::new(field, format!("'{field}' is not supported by this gateway"))),
        false => Ok(()),
    }
}

/// Streaming, sampling options and output format, shared by chat and generate.
fn apply_common(
    out: &mut ChatCompletionRequest,
    stream: bool,
    options: Option<&RequestOptions>,
    format: Option<&Value>,
) -> Result<(), InvalidParam> {
    if stream {
        out.stream = Some(true);
        // The final line's eval counts come from the usage chunk.
        out.stream_options = Some(StreamOptions { include_usage: true });
    }
    if let Some(o) = options {
        out.max_tokens = o.num_predict.filter(|n| *n > 0).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        out.temperature = o.temperature;
        out.top_p = o.top_p;
        out.top_k = o.top_k;
        out.min_p = o.min_p;
        out.seed = o.seed;
        out.stop = o.stop.clone().filter(|s| !s.is_empty()).map(Stop::Many);
        out.repetition_penalty = o.repeat_penalty;
        out.presence_penalty = o.presence_penalty;
        out.frequency_penalty = o.frequency_penalty;
    }
    if let Some(rf) = format.map(response_format).transpose()?.flatten() {
        out.extra.insert("response_format".to_owned(), rf);
    }
    Ok(())
}

fn is_no_format(format: &Value) -> bool {
    matches!(format, Value::Null) || format.as_str() == Some("")
}

/// `format` → OpenAI's `response_format`.
fn response_format(format: &Value) -> Result<Option<Value>, InvalidParam> {
    match format {
        f if is_no_format(f) => Ok(None),
        Value::String(s) if s == "json" => Ok(Some(json!({"type": "json_object"}))),
        Value::Object(schema) => {
            Ok(Some(json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})))
        }
        _ => Err(InvalidParam::new("format", "'format' must be \"json\" or a JSON schema object")),
    }
}

/// Validation errors of the pivot, renamed to the Ollama field they came from.
fn ollama_names(e: InvalidParam) -> InvalidParam {
    let param = match e.param.as_str() {
        "max_tokens" => "options.num_predict".to_owned(),
        "repetition_penalty" => "options.repeat_penalty".to_owned(),
        p @ ("temperature" | "top_p" | "top_k" | "min_p" | "stop" | "presence_penalty" | "frequency_penalty") => {
            format!("options.{p}")
        }
        p => p.to_owned(),
    };
    InvalidParam { param, message: e.message }
}

/// Ollama messages → OpenAI messages, one each; tool calls get ids and tool answers are matched
/// to them (by `tool_name`, else in order).
fn messages(input: &[ChatMessage]) -> Result<Vec<openai::ChatMessage>, InvalidParam> {
    let mut ids = ToolIds::default();
    let mut out = Vec::with_capacity(input.len());
    for (i, m) in input.iter().enumerate() {
        let has_images = m.images.as_ref().is_some_and(|v| !v.is_empty());
        let message = match m.role.as_str() {
            "user" => user_message(&m.content, m.images.as_deref().unwrap_or_default()),
            _ if has_images => {
                return Err(InvalidParam::new(format!("messages[{i}].images"), "only user messages can carry images"));
            }
            "system" => openai::ChatMessage::new(Role::System, m.content.clone()),
            "assistant" => ids.assistant(m),
            "tool" => {
                let id = ids.answer(m.tool_name.as_deref(), i);
                openai::ChatMessage {
                    tool_call_id: Some(id),
                    ..openai::ChatMessage::new(Role::Tool, m.content.clone())
                }
            }
            other => {
                let msg =
                    format!("unknown role '{}': expected system, user, assistant or tool", openai::shape::clip(other));
                return Err(InvalidParam::new(format!("messages[{i}].role"), msg));
            }
        };
        out.push(message);
    }
    Ok(out)
}

/// Ids for Ollama's id-less tool calls, and which calls still await their answer.
#[derive(Default)]
struct ToolIds {
    issued: usize,
    /// Calls of the latest assistant turn not answered yet: (id, name).
    pending: Vec<(String, String)>,
}

impl ToolIds {
    /// An assistant message, its tool calls numbered `call_N`.
    fn assistant(&mut self, m: &ChatMessage) -> openai::ChatMessage {
        self.pending.clear();
        let calls = m.tool_calls.as_deref().unwrap_or_default();
        let mut out_calls = Vec::with_capacity(calls.len());
        for call in calls {
            let id = format!("call_{}", self.issued);
            self.issued += 1;
            let arguments = Value::Object(call.function.arguments.clone()).to_string();
            out_calls.push(function_call(&id, &call.function.name, &arguments));
            self.pending.push((id, call.function.name.clone()));
        }
        let content = (!m.content.is_empty() || out_calls.is_empty()).then(|| MessageContent::Text(m.content.clone()));
        let tool_calls = (!out_calls.is_empty()).then_some(out_calls);
        openai::ChatMessage { content, tool_calls, ..openai::ChatMessage::new(Role::Assistant, "") }
    }

    /// The id a tool answer refers to: the pending call of that name, else the oldest pending.
    fn answer(&mut self, tool_name: Option<&str>, position: usize) -> String {
        let named = tool_name.and_then(|n| self.pending.iter().position(|(_, name)| name == n));
        match named.or((!self.pending.is_empty()).then_some(0)) {
            Some(k) => self.pending.remove(k).0,
            None => format!("call_unmatched_{position}"),
        }
    }
}

fn user_message(text: &str, images: &[String]) -> openai::ChatMessage {
    if images.is_empty() {
        return openai::ChatMessage::new(Role::User, text);
    }
    let mut parts = vec![ContentPart { kind: "text".to_owned(), text: Some(text.to_owned()), rest: Map::new() }];
    for image in images {
        let mut rest = Map::new();
        rest.insert("image_url".to_owned(), json!({"url": data_url(image)}));
        parts.push(ContentPart { kind: "image_url".to_owned(), text: None, rest });
    }
    openai::ChatMessage { content: Some(MessageContent::Parts(parts)), ..openai::ChatMessage::new(Role::User, "") }
}

/// Ollama's bare base64 as a `data:` URL; the type is read from the file's magic bytes as they
/// appear in base64 (PNG unless it is recognisably JPEG, GIF or WebP).
fn data_url(base64: &str) -> String {
    let mime = match base64 {
        b if b.starts_with("/9j/") => "image/jpeg",
        b if b.starts_with("R0lGOD") => "image/gif",
        b if b.starts_with("UklGR") => "image/webp",
        _ => "image/png",
    };
    format!("data:{mime};base64,{base64}")
}
