//! Pure conversions between ferrogate's normalized types and Ollama's native API: request
//! bodies (`/api/chat`, `/api/generate`), sampling options, tool calls, images, NDJSON lines
//! (a line decoder) and model lists.
//!
//! Invariant: only per-request sampling options are ever sent (the protocol's `Options` has no
//! `num_ctx` or other load-time field, and `extra` is not forwarded), so a request never makes
//! Ollama reload the model.

use std::collections::VecDeque;

use ferrogate_core::{BackendError, Completion, GenParams, InferenceRequest, Input, StreamEvent};
use ferrogate_protocol::lines::LineDecoder;
use ferrogate_protocol::ollama::{ChatRequest, GenerateRequest, Message, Options, StreamLine, TagsResponse};
use ferrogate_protocol::openai::{ChatMessage, FinishReason, MessageContent, Role, Usage};
use serde_json::{Map, Value, json};

use crate::http::{classify, truncate};
use crate::stream::{Decoder, Item};

/// Which Ollama endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Generate,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/api/chat",
            Endpoint::Generate => "/api/generate",
        }
    }
}

// === requests ===

/// The upstream request body for `req` and the endpoint it goes to. `keep_alive` is the
/// config's value, already converted by [`keep_alive`].
pub(crate) fn request_body(
    req: &InferenceRequest,
    keep_alive: Option<&Value>,
    stream: bool,
) -> Result<(Endpoint, Value), BackendError> {
    let keep_alive = keep_alive.cloned();
    let (endpoint, body) = match &req.input {
        Input::Chat { messages, tools, tool_choice: _ } => {
            let body = ChatRequest {
                model: req.model.clone(),
                messages: messages.iter().map(message).collect::<Result<_, _>>()?,
                stream,
                options: options(&req.params),
                keep_alive,
                tools: tools.clone(),
                format: format(&req.extra),
            };
            (Endpoint::Chat, serde_json::to_value(body))
        }
        Input::Text(prompt) => {
            let body = GenerateRequest {
                model: req.model.clone(),
                prompt: prompt.clone(),
                stream,
                raw: true,
                options: options(&req.params),
                keep_alive,
            };
            (Endpoint::Generate, serde_json::to_value(body))
        }
    };
    Ok((endpoint, body.map_err(|e| BackendError::Internal(format!("cannot encode the request: {e}")))?))
}

/// Per-request sampling options only (see the module invariant).
pub(crate) fn options(p: &GenParams) -> Options {
    Options {
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        seed: p.seed,
        num_predict: p.max_tokens.map(i64::from),
        stop: (!p.stop.is_empty()).then(|| p.stop.clone()),
        repeat_penalty: p.repetition_penalty,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
    }
}

/// `keep_alive` as Ollama parses it: seconds must be a JSON number, durations a string.
pub(crate) fn keep_alive(s: &str) -> Value {
    let s = s.trim();
    s.parse::<i64>().map_or_else(|_| Value::String(s.to_owned()), Value::from)
}

/// OpenAI `response_format` → Ollama `format` (`"json"` or a JSON schema).
fn format(extra: &Map<String, Value>) -> Option<Value> {
    let rf = extra.get("response_format")?;
    match rf.get("type")?.as_str()? {
        "json_object" => Some(Value::String("json".to_owned())),
        "json_schema" => rf.get("json_schema")?.get("schema").cloned(),
        _ => None,
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool | Role::Function => "tool",
    }
}

fn message(m: &ChatMessage) -> Result<Message, BackendError> {
    Ok(Message {
        role: role(m.role).to_owned(),
        content: m.text(),
        tool_calls: m.tool_calls.as_deref().map(|calls| calls.iter().map(tool_call_to_ollama).collect()),
        images: images(m.content.as_ref())?,
    })
}

/// OpenAI's `{function: {name, arguments: "<json text>"}}` → Ollama's arguments object.
fn tool_call_to_ollama(call: &Value) -> Value {
    let f = call.get("function").unwrap_or(&Value::Null);
    let args = match f.get("arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(other) => other.clone(),
        None => json!({}),
    };
    json!({"function": {"name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": args}})
}

/// Image parts as Ollama's base64 `images`; only `data:` URLs can be passed on.
fn images(content: Option<&MessageContent>) -> Result<Option<Vec<String>>, BackendError> {
    let Some(MessageContent::Parts(parts)) = content else { return Ok(None) };
    let mut out = Vec::new();
    for part in parts.iter().filter(|p| p.kind != "text") {
        if part.kind != "image_url" {
            return Err(invalid(format!("Ollama backends do not accept '{}' content parts", part.kind)));
        }
        let url =
            part.rest.get("image_url").and_then(|u| u.get("url").or(Some(u))).and_then(Value::as_str).unwrap_or("");
        out.push(
            data_url_payload(url)
                .ok_or_else(|| invalid("Ollama backends accept images only as base64 data: URLs".to_owned()))?,
        );
    }
    Ok((!out.is_empty()).then_some(out))
}

fn invalid(message: String) -> BackendError {
    BackendError::InvalidRequest { param: Some("messages".to_owned()), message }
}

/// The base64 payload of `data:<mime>;base64,<payload>`.
fn data_url_payload(url: &str) -> Option<String> {
    let (meta, payload) = url.strip_prefix("data:")?.split_once(',')?;
    meta.ends_with(";base64").then(|| payload.to_owned())
}

// === responses and lines ===

/// Ollama tool calls → OpenAI's shape (arguments as JSON text); stream deltas carry `index`.
fn tool_calls_from_ollama(calls: &[Value], first_index: usize, with_index: bool) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let i = first_index + i;
            let f = call.get("function").unwrap_or(&Value::Null);
            let args = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "{}".to_owned(),
            };
            let mut v = json!({"id": format!("call_{i}"), "type": "function", "function": {"name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": args}});
            if with_index {
                v["index"] = json!(i);
            }
            v
        })
        .collect()
}

/// One NDJSON line; an `error` line is the upstream's failure.
pub(crate) fn parse_line(line: &[u8]) -> Result<StreamLine, BackendError> {
    let parsed: StreamLine = serde_json::from_slice(line)
        .map_err(|e| BackendError::Protocol(truncate(&format!("upstream line is not valid JSON: {e}"))))?;
    match &parsed.error {
        Some(message) => Err(classify(500, truncate(message), None)),
        None => Ok(parsed),
    }
}

fn finish_reason(done_reason: Option<&str>, had_tool_calls: bool) -> FinishReason {
    match done_reason {
        Some("length") => FinishReason::Length,
        _ if had_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Usage only when Ollama reported both counts; otherwise the gateway counts locally.
fn usage(line: &StreamLine) -> Option<Usage> {
    Some(Usage::new(line.prompt_eval_count?, line.eval_count?, None))
}

/// The text and tool calls of a line (`message` for chat, `response` for generate).
fn content(line: &mut StreamLine) -> (String, Vec<Value>) {
    match line.message.take() {
        Some(m) => (m.content, m.tool_calls.unwrap_or_default()),
        None => (line.response.take().unwrap_or_default(), Vec::new()),
    }
}

/// A whole (non-streamed) `/api/chat` or `/api/generate` answer.
pub(crate) fn parse_completion(body: &[u8]) -> Result<Completion, BackendError> {
    let mut line = parse_line(body)?;
    let (text, calls) = content(&mut line);
    let tool_calls = (!calls.is_empty()).then(|| tool_calls_from_ollama(&calls, 0, false));
    let finish_reason = finish_reason(line.done_reason.as_deref(), tool_calls.is_some());
    Ok(Completion { text, tool_calls, logprobs: None, finish_reason, usage: usage(&line), raw: None })
}

/// Decodes Ollama's NDJSON stream into events as bytes arrive.
#[derive(Debug, Default)]
pub(crate) struct NdjsonLines {
    lines: LineDecoder,
    done: bool,
    /// Tool calls seen so far: numbers the next ones and makes the finish `tool_calls`.
    tool_calls: usize,
}

impl NdjsonLines {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn line(&mut self, text: &str, out: &mut VecDeque<Item>) {
        let mut line = match parse_line(text.as_bytes()) {
            Ok(l) => l,
            Err(e) => return out.push_back(Err(e)),
        };
        let (text, calls) = content(&mut line);
        let tool_calls = (!calls.is_empty()).then(|| tool_calls_from_ollama(&calls, self.tool_calls, true));
        self.tool_calls += calls.len();
        if !text.is_empty() || tool_calls.is_some() {
            out.push_back(Ok(StreamEvent::Delta { text, tool_calls, logprobs: None }));
        }
        if line.done {
            self.done = true;
            out.push_back(Ok(StreamEvent::Finish(finish_reason(line.done_reason.as_deref(), self.tool_calls > 0))));
            out.extend(usage(&line).map(|u| Ok(StreamEvent::Usage(u))));
        }
    }
}

impl Decoder for NdjsonLines {
    fn push(&mut self, bytes: &[u8], out: &mut VecDeque<Item>) {
        let lines = match self.lines.try_push(bytes) {
            Ok(lines) => lines,
            Err(e) => return out.push_back(Err(BackendError::Protocol(e.to_string()))),
        };
        for line in lines {
            if self.done {
                break;
            }
            self.line(&line, out);
        }
    }

    fn flush(&mut self, out: &mut VecDeque<Item>) {
        if let Some(line) = self.lines.finish().filter(|_| !self.done) {
            self.line(&line, out);
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finished(&self) -> bool {
        self.done
    }
}

/// Model names of an `/api/tags` or `/api/ps` answer.
pub(crate) fn model_names(body: &[u8]) -> Result<Vec<String>, BackendError> {
    let tags: TagsResponse = serde_json::from_slice(body)
        .map_err(|e| BackendError::Protocol(truncate(&format!("the model list is not valid JSON: {e}"))))?;
    Ok(tags.models.into_iter().map(|m| if m.name.is_empty() { m.model } else { m.name }).collect())
}

/// `llama3` and `llama3:latest` are the same model to Ollama.
fn canonical(name: &str) -> String {
    if name.contains(':') { name.to_owned() } else { format!("{name}:latest") }
}

/// The first of `wanted` that `have` lacks.
pub(crate) fn first_missing<'a>(wanted: &'a [String], have: &[String]) -> Option<&'a str> {
    let have: Vec<String> = have.iter().map(|h| canonical(h)).collect();
    wanted.iter().find(|w| !have.contains(&canonical(w))).map(String::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferrogate_protocol::openai::ContentPart;

    fn request(input: Input) -> InferenceRequest {
        InferenceRequest {
            request_id: "r".into(),
            model: "llama3.2".into(),
            input,
            params: GenParams {
                temperature: Some(0.2),
                top_k: Some(20),
                max_tokens: Some(64),
                stop: vec!["END".into()],
                seed: Some(1),
                repetition_penalty: Some(1.1),
                ..GenParams::default()
            },
            extra: json!({"options": {"num_ctx": 8192}, "response_format": {"type": "json_object"}})
                .as_object()
                .unwrap()
                .clone(),
            obs: Default::default(),
            passthrough: false,
        }
    }

    fn chat(messages: Vec<ChatMessage>) -> Input {
        Input::Chat { messages, tools: None, tool_choice: None }
    }

    #[test]
    fn chat_request_maps_options_and_never_sends_num_ctx() {
        let ka = keep_alive("30m");
        let (endpoint, body) =
            request_body(&request(chat(vec![ChatMessage::new(Role::Developer, "x")])), Some(&ka), true).unwrap();
        assert_eq!(endpoint, Endpoint::Chat);
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["stream"], true);
        assert_eq!(body["keep_alive"], "30m");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["format"], "json");
        let o = &body["options"];
        assert_eq!((o["top_k"].clone(), o["num_predict"].clone(), o["seed"].clone()), (json!(20), json!(64), json!(1)));
        assert_eq!(o["stop"], json!(["END"]));
        assert!(o.get("repeat_penalty").is_some());
        assert!(o.get("num_ctx").is_none() && body.get("num_ctx").is_none());
        assert!(!body.to_string().contains("num_ctx"));
    }

    #[test]
    fn text_input_is_a_raw_generate() {
        let (endpoint, body) = request_body(&request(Input::Text("abc".into())), None, false).unwrap();
        assert_eq!(endpoint, Endpoint::Generate);
        assert_eq!(
            (body["prompt"].clone(), body["raw"].clone(), body["stream"].clone()),
            (json!("abc"), json!(true), json!(false))
        );
        assert!(body.get("keep_alive").is_none());
    }

    #[test]
    fn keep_alive_numbers_and_durations() {
        assert_eq!(keep_alive("300"), json!(300));
        assert_eq!(keep_alive("-1"), json!(-1));
        assert_eq!(keep_alive("1h"), json!("1h"));
    }

    #[test]
    fn tool_calls_both_ways_and_images() {
        let mut assistant = ChatMessage::new(Role::Assistant, "");
        assistant.tool_calls =
            Some(vec![json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}})]);
        let m = message(&assistant).unwrap();
        assert_eq!(m.tool_calls.unwrap()[0], json!({"function": {"name": "f", "arguments": {"a": 1}}}));
        let back = tool_calls_from_ollama(&[json!({"function": {"name": "f", "arguments": {"a": 1}}})], 2, true);
        assert_eq!(back[0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!((back[0]["index"].clone(), back[0]["id"].clone()), (json!(2), json!("call_2")));

        let part = |kind: &str, rest: Value| ContentPart {
            kind: kind.into(),
            text: None,
            rest: rest.as_object().unwrap().clone(),
        };
        let img =
            MessageContent::Parts(vec![part("image_url", json!({"image_url": {"url": "data:image/png;base64,QUJD"}}))]);
        assert_eq!(images(Some(&img)).unwrap(), Some(vec!["QUJD".to_owned()]));
        let remote = MessageContent::Parts(vec![part("image_url", json!({"image_url": {"url": "https://x/y.png"}}))]);
        assert!(matches!(images(Some(&remote)), Err(BackendError::InvalidRequest { .. })));
    }

    fn oks(items: &[Item]) -> Vec<StreamEvent> {
        items.iter().map(|i| i.clone().unwrap()).collect()
    }

    fn decode(parts: &[&[u8]]) -> (Vec<Item>, NdjsonLines) {
        let mut d = NdjsonLines::new();
        let mut out = VecDeque::new();
        for p in parts {
            d.push(p, &mut out);
        }
        (out.into_iter().collect(), d)
    }

    const STREAM: &str = concat!(
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hé\"},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"llo\"},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":9,\"eval_count\":2}\n",
    );

    #[test]
    fn lines_map_to_events_for_any_split() {
        let expected = vec![
            StreamEvent::Delta { text: "Hé".into(), tool_calls: None, logprobs: None },
            StreamEvent::Delta { text: "llo".into(), tool_calls: None, logprobs: None },
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Usage(Usage::new(9, 2, None)),
        ];
        let (items, d) = decode(&[STREAM.as_bytes()]);
        assert_eq!(oks(&items), expected);
        assert!(d.is_done());
        let singles: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(oks(&decode(&singles).0), expected);
    }

    #[test]
    fn error_line_and_garbage() {
        let (items, d) = decode(&[
            b"{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n{\"error\":\"out of memory\"}\n",
        ]);
        assert!(
            matches!(&items[1], Err(BackendError::Status { status: 500, message, .. }) if message == "out of memory")
        );
        assert!(!d.finished());
        let (items, _) = decode(&[b"nope\n"]);
        assert!(matches!(&items[0], Err(BackendError::Protocol(_))));
    }

    #[test]
    fn whole_answers_generate_and_tool_calls() {
        let c = parse_completion(br#"{"response":"abc","done":true,"done_reason":"stop","eval_count":3}"#).unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason, c.usage), ("abc", FinishReason::Stop, None));
        let c = parse_completion(br#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":true,"done_reason":"stop","prompt_eval_count":0,"eval_count":0}"#).unwrap();
        assert_eq!((c.finish_reason, c.usage), (FinishReason::ToolCalls, Some(Usage::new(0, 0, None))));
        assert!(matches!(parse_completion(br#"{"error":"model 'x' not found"}"#), Err(BackendError::Status { .. })));
    }

    #[test]
    fn model_lists_and_latest_tags() {
        let names =
            model_names(br#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"},{"model":"qwen:7b"}]}"#)
                .unwrap();
        assert_eq!(names, vec!["llama3.2:latest", "qwen:7b"]);
        let want = vec!["llama3.2".to_owned(), "qwen:7b".to_owned()];
        assert_eq!(first_missing(&want, &names), None);
        assert_eq!(first_missing(&want, &names[..1]), Some("qwen:7b"));
    }
}
