//! Pure conversions between ferrogate's normalized types and the OpenAI wire format: request
//! bodies, whole responses, stream chunks (an SSE decoder), error events and `/models`.
//!
//! Invariant: upstream output is read tolerantly (missing `usage` → `None`, explicit zeros stay
//! zeros, unknown fields ignored, free-form finish reasons mapped); typed request fields win
//! over `extra` so a client can never smuggle a second `model` or `stream`.

use std::collections::VecDeque;

use ferrogate_core::chunk::RawChunk;
use ferrogate_core::{BackendError, Completion, GenParams, InferenceRequest, Input, StreamEvent};
use ferrogate_protocol::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, FinishReason, PromptInput, Stop, StreamOptions, Usage,
};
use ferrogate_protocol::sse::{SseDecoder, SseEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::passthrough::Peeked;
use crate::http::{classify, json_message, truncate};
use crate::stream::{Decoder, Item};

/// Which OpenAI endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        }
    }
}

// === requests ===

/// The typed upstream request, before `extra` fields are merged in.
#[derive(Serialize)]
#[serde(untagged)]
enum Typed {
    Chat(Box<ChatCompletionRequest>),
    Completion(Box<CompletionRequest>),
}

fn typed_request(req: &InferenceRequest, stream: bool) -> (Endpoint, Typed) {
    match &req.input {
        Input::Chat { messages, tools, tool_choice } => {
            let body = chat_request(&req.model, messages, tools.clone(), tool_choice.clone(), &req.params, stream);
            (Endpoint::Chat, Typed::Chat(Box::new(body)))
        }
        Input::Text(prompt) => {
            let body = completion_request(&req.model, prompt, &req.params, stream);
            (Endpoint::Completions, Typed::Completion(Box::new(body)))
        }
    }
}

fn encode_error(e: &serde_json::Error) -> BackendError {
    BackendError::Internal(format!("cannot encode the request: {e}"))
}

/// The upstream request body for `req` (with `extra` fields merged) and the endpoint it goes to.
pub(crate) fn request_body(req: &InferenceRequest, stream: bool) -> Result<(Endpoint, Value), BackendError> {
    let (endpoint, typed) = typed_request(req, stream);
    let Value::Object(typed) = serde_json::to_value(typed).map_err(|e| encode_error(&e))? else {
        return Err(BackendError::Internal("request did not encode to an object".to_owned()));
    };
    Ok((endpoint, Value::Object(merge_extra(typed, &req.extra))))
}

/// The upstream request body, encoded. Without `extra` fields (the common case) the typed request
/// is encoded directly, skipping the `Value` map that merging needs.
pub(crate) fn request_bytes(req: &InferenceRequest, stream: bool) -> Result<(Endpoint, Vec<u8>), BackendError> {
    if req.extra.is_empty() {
        let (endpoint, typed) = typed_request(req, stream);
        return Ok((endpoint, serde_json::to_vec(&typed).map_err(|e| encode_error(&e))?));
    }
    let (endpoint, body) = request_body(req, stream)?;
    Ok((endpoint, serde_json::to_vec(&body).map_err(|e| encode_error(&e))?))
}

/// `extra` fields are added verbatim unless a typed field of the same name is set.
fn merge_extra(mut typed: Map<String, Value>, extra: &Map<String, Value>) -> Map<String, Value> {
    for (k, v) in extra {
        typed.entry(k.clone()).or_insert_with(|| v.clone());
    }
    typed
}

fn stream_fields(stream: bool) -> (Option<bool>, Option<StreamOptions>) {
    if stream { (Some(true), Some(StreamOptions { include_usage: true })) } else { (None, None) }
}

fn stop(p: &GenParams) -> Option<Stop> {
    (!p.stop.is_empty()).then(|| Stop::Many(p.stop.clone()))
}

fn chat_request(
    model: &str,
    messages: &[ChatMessage],
    tools: Option<Value>,
    tool_choice: Option<Value>,
    p: &GenParams,
    stream: bool,
) -> ChatCompletionRequest {
    let (stream, stream_options) = stream_fields(stream);
    ChatCompletionRequest {
        model: model.to_owned(),
        messages: messages.to_vec(),
        temperature: p.temperature,
        top_p: p.top_p,
        max_tokens: p.max_tokens,
        stop: stop(p),
        seed: p.seed,
        user: p.user.clone(),
        stream,
        stream_options,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        top_k: p.top_k,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        tools,
        tool_choice,
        ..ChatCompletionRequest::default()
    }
}

fn completion_request(model: &str, prompt: &str, p: &GenParams, stream: bool) -> CompletionRequest {
    let (stream, stream_options) = stream_fields(stream);
    CompletionRequest {
        model: model.to_owned(),
        prompt: PromptInput::One(prompt.to_owned()),
        max_tokens: p.max_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        stop: stop(p),
        seed: p.seed,
        n: None,
        user: p.user.clone(),
        stream,
        stream_options,
        frequency_penalty: p.frequency_penalty,
        presence_penalty: p.presence_penalty,
        echo: None,
        top_k: p.top_k,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        extra: Map::new(),
    }
}

// === responses and chunks (tolerant wire shapes) ===

/// A chat or text completion, whole or one stream chunk: only what ferrogate reads.
#[derive(Debug, Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
struct WireChoice {
    /// Whole chat answers.
    #[serde(default)]
    message: Option<WireMessage>,
    /// Chat stream chunks.
    #[serde(default)]
    delta: Option<WireMessage>,
    /// Text completions, whole or chunk.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    /// Chat `{"content": [...]}` when the client asked for log probabilities.
    #[serde(default)]
    logprobs: Option<WireLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
struct WireLogprobs {
    #[serde(default)]
    content: Option<Vec<Value>>,
}

impl WireChoice {
    fn take_logprobs(&mut self) -> Option<Vec<Value>> {
        self.logprobs.take().and_then(|l| l.content).filter(|c| !c.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

fn invalid_json(what: &str, e: &serde_json::Error) -> BackendError {
    BackendError::Protocol(truncate(&format!("{what} is not valid JSON: {e}")))
}

/// A whole `/chat/completions` or `/completions` answer.
pub(crate) fn parse_completion(body: &[u8]) -> Result<Completion, BackendError> {
    // Fast path: a normal answer decodes straight into the wire shape. Anything else (an error
    // object, no choices, unexpected shapes) takes the `Value` path, which explains it.
    let wire = match serde_json::from_slice::<WireResponse>(body) {
        Ok(wire) if !wire.choices.is_empty() => wire,
        _ => {
            let v: Value = serde_json::from_slice(body).map_err(|e| invalid_json("the response", &e))?;
            if let Some(err) = error_in(&v) {
                return Err(err);
            }
            serde_json::from_value(v).map_err(|e| invalid_json("the response", &e))?
        }
    };
    let mut choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| BackendError::Protocol("the response has no choices".to_owned()))?;
    let logprobs = choice.take_logprobs();
    let (text, tool_calls) = match choice.message {
        Some(m) => (m.content.unwrap_or_default(), m.tool_calls.filter(|c| !c.is_empty())),
        None => (choice.text.unwrap_or_default(), None),
    };
    let finish_reason = finish_reason(choice.finish_reason.as_deref(), tool_calls.is_some());
    Ok(Completion { text, tool_calls, logprobs, finish_reason, usage: wire.usage, raw: None })
}

fn finish_reason(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some(r) => FinishReason::from_upstream(r),
        None if has_tool_calls => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    }
}

/// The events of one stream chunk, in order: content, finish, usage. Role-only deltas give none.
fn chunk_events(wire: WireResponse, out: &mut VecDeque<Item>) -> bool {
    let mut finished = false;
    for mut choice in wire.choices {
        let logprobs = choice.take_logprobs();
        let delta = choice.delta.unwrap_or_default();
        let text = delta.content.or(choice.text).unwrap_or_default();
        let tool_calls = delta.tool_calls.filter(|c| !c.is_empty());
        if !text.is_empty() || tool_calls.is_some() || logprobs.is_some() {
            out.push_back(Ok(StreamEvent::Delta { text, tool_calls, logprobs }));
        }
        if let Some(r) = choice.finish_reason {
            out.push_back(Ok(StreamEvent::Finish(FinishReason::from_upstream(&r))));
            finished = true;
        }
    }
    if let Some(usage) = wire.usage {
        out.push_back(Ok(StreamEvent::Usage(usage)));
    }
    finished
}

/// An error reported inside a 200 body or stream: `{"error": …}` or vLLM's `{"object":"error"}`.
fn error_in(v: &Value) -> Option<BackendError> {
    let is_error =
        v.get("error").is_some_and(|e| !e.is_null()) || v.get("object").and_then(Value::as_str) == Some("error");
    if !is_error {
        return None;
    }
    let message = json_message(v).map_or_else(|| "upstream reported an error".to_owned(), |m| truncate(&m));
    Some(classify(error_status(v), message, None))
}

/// The HTTP status an error event names (`code` or `status`, top level or in `error`), else 500.
fn error_status(v: &Value) -> u16 {
    let scopes = [v.get("error"), Some(v)];
    scopes
        .into_iter()
        .flatten()
        .flat_map(|s| [s.get("code"), s.get("status")])
        .flatten()
        .find_map(|c| c.as_u64().and_then(|n| u16::try_from(n).ok()).filter(|n| (400..=599).contains(n)))
        .unwrap_or(500)
}

// === streams ===

/// Decodes an OpenAI SSE stream into events as bytes arrive; with `passthrough`, plain chat
/// chunks are handed over as they came ([`StreamEvent::Frame`], see `passthrough`).
#[derive(Debug)]
pub(crate) struct SseChunks {
    sse: SseDecoder,
    state: ChunkState,
}

/// What the stream's events so far have said.
#[derive(Debug, Default)]
struct ChunkState {
    done: bool,
    finished: bool,
    passthrough: bool,
}

impl SseChunks {
    pub(crate) fn new(passthrough: bool) -> Self {
        Self { sse: SseDecoder::default(), state: ChunkState { passthrough, ..ChunkState::default() } }
    }
}

impl ChunkState {
    fn event(&mut self, ev: SseEvent, out: &mut VecDeque<Item>) {
        if ev.is_done() {
            self.done = true;
            return;
        }
        let ev = if self.passthrough {
            match super::passthrough::peek_chunk(ev.data) {
                Ok(Peeked::Chunk(raw)) => return self.raw(raw, out),
                Ok(Peeked::Usage(usage)) => return out.push_back(Ok(StreamEvent::Usage(usage))),
                Err(data) => SseEvent { data, ..ev },
            }
        } else {
            ev
        };
        // Fast path as in `parse_completion`: content, finish and usage chunks decode directly.
        if let Ok(wire) = serde_json::from_str::<WireResponse>(&ev.data)
            && (!wire.choices.is_empty() || wire.usage.is_some())
        {
            self.finished |= chunk_events(wire, out);
            return;
        }
        match serde_json::from_str::<Value>(&ev.data) {
            Err(e) => out.push_back(Err(invalid_json("a stream event", &e))),
            Ok(v) => self.chunk(v, out),
        }
    }

    /// A chunk passed through: an event only when it carries content or a finish (a role-only
    /// chunk gives none, as when decoded).
    fn raw(&mut self, raw: RawChunk, out: &mut VecDeque<Item>) {
        self.finished |= raw.finish.is_some();
        if raw.has_content() || raw.finish.is_some() {
            out.push_back(Ok(StreamEvent::Frame(raw)));
        }
    }

    fn chunk(&mut self, v: Value, out: &mut VecDeque<Item>) {
        if let Some(err) = error_in(&v) {
            out.push_back(Err(err));
            return;
        }
        match serde_json::from_value::<WireResponse>(v) {
            Ok(wire) => self.finished |= chunk_events(wire, out),
            Err(e) => out.push_back(Err(BackendError::Protocol(truncate(&format!("unexpected stream chunk: {e}"))))),
        }
    }
}

impl Decoder for SseChunks {
    fn push(&mut self, bytes: &[u8], out: &mut VecDeque<Item>) {
        let state = &mut self.state;
        let decoded = self.sse.try_push_with(bytes, |ev| {
            if !state.done {
                state.event(ev, out);
            }
        });
        if let Err(e) = decoded {
            out.push_back(Err(BackendError::Protocol(e.to_string())));
        }
    }

    fn is_done(&self) -> bool {
        self.state.done
    }

    fn finished(&self) -> bool {
        self.state.finished
    }
}

/// A whole answer replayed as stream events (for upstreams that ignore `stream: true`).
pub(crate) fn completion_events(c: Completion) -> Vec<Item> {
    let mut out = Vec::with_capacity(3);
    if !c.text.is_empty() || c.tool_calls.is_some() || c.logprobs.is_some() {
        out.push(Ok(StreamEvent::Delta { text: c.text, tool_calls: c.tool_calls, logprobs: c.logprobs }));
    }
    out.push(Ok(StreamEvent::Finish(c.finish_reason)));
    out.extend(c.usage.map(|u| Ok(StreamEvent::Usage(u))));
    out
}

// === models ===

#[derive(Deserialize)]
struct WireModels {
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
}

/// `data[].id` of a `/models` answer.
pub(crate) fn model_ids(body: &[u8]) -> Result<Vec<String>, BackendError> {
    let models: WireModels = serde_json::from_slice(body).map_err(|e| invalid_json("the model list", &e))?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use ferrogate_protocol::openai::Role;
    use serde_json::json;

    fn request(input: Input) -> InferenceRequest {
        InferenceRequest {
            request_id: "req-1".into(),
            model: "upstream-model".into(),
            input,
            params: GenParams {
                temperature: Some(0.5),
                max_tokens: Some(7),
                stop: vec!["\n".into()],
                seed: Some(42),
                user: Some("u1".into()),
                top_k: Some(40),
                ..GenParams::default()
            },
            extra: json!({"response_format": {"type": "json_object"}, "model": "smuggled", "stream": false})
                .as_object()
                .unwrap()
                .clone(),
            obs: Default::default(),
            passthrough: false,
        }
    }

    fn chat_input() -> Input {
        Input::Chat {
            messages: vec![ChatMessage::new(Role::System, "be brief"), ChatMessage::new(Role::User, "hi")],
            tools: Some(json!([{"type": "function", "function": {"name": "f"}}])),
            tool_choice: Some(json!("auto")),
        }
    }

    #[test]
    fn chat_request_maps_model_params_and_extra() {
        let (endpoint, body) = request_body(&request(chat_input()), false).unwrap();
        let (bytes_endpoint, bytes) = request_bytes(&request(chat_input()), false).unwrap();
        assert_eq!(bytes_endpoint, endpoint);
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), body, "direct encoding = merged encoding");
        assert_eq!(endpoint, Endpoint::Chat);
        assert_eq!(body["model"], "upstream-model");
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "hi"}));
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["max_tokens"], 7);
        assert_eq!(body["stop"], json!(["\n"]));
        assert_eq!(
            (body["seed"].clone(), body["user"].clone(), body["top_k"].clone()),
            (json!(42), json!("u1"), json!(40))
        );
        assert_eq!(body["tools"][0]["function"]["name"], "f");
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream"], false, "extra fills only unset fields");
        assert!(body.get("stream_options").is_none());
        assert!(body.get("top_p").is_none(), "unset params are not sent");
    }

    #[test]
    fn stream_request_asks_for_usage_and_overrides_extra() {
        let (_, body) = request_body(&request(chat_input()), true).unwrap();
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(body["model"], "upstream-model");
    }

    #[test]
    fn text_input_goes_to_completions() {
        let (endpoint, body) = request_body(&request(Input::Text("once upon".into())), true).unwrap();
        assert_eq!(endpoint, Endpoint::Completions);
        assert_eq!(body["prompt"], "once upon");
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert!(body.get("messages").is_none());
    }

    #[test]
    fn parses_chat_and_text_answers_tolerantly() {
        let c = parse_completion(br#"{"choices":[{"message":{"role":"assistant","content":"hey"},"finish_reason":"length"}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#).unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason), ("hey", FinishReason::Length));
        assert_eq!(c.usage, Some(Usage::new(0, 0, None)), "explicit zeros stay zeros");
        let c = parse_completion(br#"{"choices":[{"text":"abc","finish_reason":"eos_token"}]}"#).unwrap();
        assert_eq!((c.text.as_str(), c.finish_reason, c.usage), ("abc", FinishReason::Stop, None));
        let c =
            parse_completion(br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"1"}]}}],"usage":null}"#)
                .unwrap();
        assert_eq!((c.finish_reason, c.usage), (FinishReason::ToolCalls, None));
    }

    #[test]
    fn bad_answers_are_protocol_or_status_errors() {
        assert!(matches!(parse_completion(b"not json"), Err(BackendError::Protocol(_))));
        assert!(matches!(parse_completion(br#"{"choices":[]}"#), Err(BackendError::Protocol(_))));
        let e = parse_completion(br#"{"error":{"message":"nope","code":503}}"#).unwrap_err();
        assert!(matches!(e, BackendError::Status { status: 503, ref message, .. } if message == "nope"));
    }

    fn oks(items: &[Item]) -> Vec<StreamEvent> {
        items.iter().map(|i| i.clone().unwrap()).collect()
    }

    fn decode(parts: &[&[u8]]) -> (Vec<Item>, SseChunks) {
        let mut d = SseChunks::new(false);
        let mut out = VecDeque::new();
        for p in parts {
            d.push(p, &mut out);
        }
        (out.into_iter().collect(), d)
    }

    fn delta(s: &str) -> StreamEvent {
        StreamEvent::Delta { text: s.into(), tool_calls: None, logprobs: None }
    }

    const STREAM: &str = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"llo\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn stream_chunks_map_to_events_for_any_split() {
        let expected = vec![
            delta("Hé"),
            delta("llo"),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage::new(3, 2, None)),
        ];
        let bytes = STREAM.as_bytes();
        let (whole, d) = decode(&[bytes]);
        assert_eq!(oks(&whole), expected);
        assert!(d.is_done() && d.finished());
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(oks(&decode(&singles).0), expected);
    }

    #[test]
    fn text_completion_chunks_and_tool_call_deltas() {
        let (items, d) = decode(&[
            b"data: {\"choices\":[{\"text\":\"abc\",\"finish_reason\":null}]}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        ]);
        assert_eq!(oks(&items[..1]), [delta("abc")]);
        assert!(matches!(&items[1], Ok(StreamEvent::Delta { tool_calls: Some(c), .. }) if c.len() == 1));
        assert_eq!(oks(&items[2..]), [StreamEvent::Finish(FinishReason::ToolCalls)]);
        assert!(d.finished() && !d.is_done());
    }

    #[test]
    fn logprobs_are_kept_whole_and_per_chunk() {
        let entry = r#"{"token":"hey","logprob":-0.1,"bytes":[104,101,121],"top_logprobs":[]}"#;
        let whole = format!(
            r#"{{"choices":[{{"message":{{"content":"hey"}},"logprobs":{{"content":[{entry}]}},"finish_reason":"stop"}}]}}"#
        );
        let c = parse_completion(whole.as_bytes()).unwrap();
        assert_eq!(c.logprobs.unwrap()[0]["token"], "hey");
        let legacy = parse_completion(br#"{"choices":[{"text":"a","logprobs":{"tokens":["a"]}}]}"#).unwrap();
        assert_eq!(legacy.logprobs, None, "legacy completions' shape is not carried");
        let chunk = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"hey\"}},\"logprobs\":{{\"content\":[{entry}]}}}}]}}\n\n"
        );
        let (items, _) = decode(&[chunk.as_bytes()]);
        assert!(matches!(&items[0], Ok(StreamEvent::Delta { logprobs: Some(l), .. }) if l.len() == 1), "{items:?}");
    }

    #[test]
    fn error_event_and_garbage() {
        let (items, _) = decode(&[b"data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"]);
        assert!(matches!(&items[0], Err(BackendError::Status { status: 500, message, .. }) if message == "boom"));
        let (items, _) = decode(&[b"data: {\"object\":\"error\",\"message\":\"too long\",\"code\":400}\n\n"]);
        assert!(matches!(&items[0], Err(BackendError::Status { status: 400, .. })));
        let (items, _) = decode(&[b"data: {garbage\n\n"]);
        assert!(matches!(&items[0], Err(BackendError::Protocol(_))));
    }

    #[test]
    fn nothing_after_done_is_decoded() {
        let (items, d) = decode(&[b"data: [DONE]\n\ndata: {\"choices\":[{\"text\":\"late\"}]}\n\n"]);
        assert!(items.is_empty() && d.is_done());
    }

    #[test]
    fn models_list() {
        assert_eq!(
            model_ids(br#"{"object":"list","data":[{"id":"a","object":"model"},{"id":"b"}]}"#).unwrap(),
            vec!["a", "b"]
        );
        assert!(model_ids(b"[]").is_err());
    }

    #[test]
    fn whole_answer_as_events() {
        let c = Completion {
            text: "x".into(),
            tool_calls: None,
            logprobs: None,
            finish_reason: FinishReason::Stop,
            usage: Some(Usage::new(1, 1, None)),
            raw: None,
        };
        assert_eq!(completion_events(c).len(), 3);
    }

    #[test]
    fn passthrough_hands_plain_chunks_over_and_decodes_the_rest() {
        let mut d = SseChunks::new(true);
        let mut out = VecDeque::new();
        d.push(STREAM.as_bytes(), &mut out);
        let items: Vec<StreamEvent> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(items.len(), 3, "{items:?}");
        let StreamEvent::Frame(first) = &items[0] else { panic!("not passed through: {:?}", items[0]) };
        assert_eq!((first.text(), first.finish), ("Hé", None));
        assert!(first.usage_key);
        let StreamEvent::Frame(last) = &items[1] else { panic!("not passed through: {:?}", items[1]) };
        assert_eq!((last.text(), last.finish), ("llo", Some(FinishReason::Stop)));
        assert_eq!(items[2], StreamEvent::Usage(Usage::new(3, 2, None)));
        assert!(d.is_done() && d.finished());
    }
}
