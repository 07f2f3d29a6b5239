//! Black-box tests of the native Ollama adapter against the testkit's fake Ollama on
//! `127.0.0.1:0`: option mapping (never `num_ctx`), NDJSON streams, done reasons, error lines,
//! faults, cancellation, health with `/api/tags` and `/api/ps`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use ferrogate_backends::{OllamaBackend, OllamaConfig};
use ferrogate_core::{
    Backend, BackendError, Blame, EventStream, GenParams, Health, InferenceRequest, Input, StreamEvent, TimeoutKind,
};
use ferrogate_protocol::openai::{ChatMessage, FinishReason, Role, Usage};
use ferrogate_testkit::ollama::{self as fake, Kind};
use ferrogate_testkit::upstream::{FakeUpstream, Reply};
use futures::StreamExt;
use serde_json::json;

const CHAT: &str = "/api/chat";
const SECOND: Duration = Duration::from_secs(1);

type Item = Result<StreamEvent, BackendError>;

fn config(f: &FakeUpstream) -> OllamaConfig {
    OllamaConfig::new(f.url(""))
}

fn backend(cfg: OllamaConfig) -> OllamaBackend {
    OllamaBackend::new("ollama", cfg).unwrap()
}

fn chat_request() -> InferenceRequest {
    InferenceRequest {
        request_id: "req-7".into(),
        model: "llama3.2".into(),
        input: Input::Chat { messages: vec![ChatMessage::new(Role::User, "hi")], tools: None, tool_choice: None },
        params: GenParams {
            temperature: Some(0.5),
            max_tokens: Some(32),
            seed: Some(3),
            stop: vec!["\n\n".into()],
            ..GenParams::default()
        },
        // A client trying to force a reload: must not reach Ollama.
        extra: json!({"options": {"num_ctx": 32768}, "num_ctx": 32768}).as_object().unwrap().clone(),
        obs: Default::default(),
        passthrough: false,
    }
}

fn delta(s: &str) -> StreamEvent {
    StreamEvent::Delta { text: s.into(), tool_calls: None, logprobs: None }
}

/// The events of `items`, which must all be `Ok`.
fn oks(items: &[Item]) -> Vec<StreamEvent> {
    items.iter().map(|i| i.clone().unwrap_or_else(|e| panic!("unexpected error item: {e:?}"))).collect()
}

async fn collect(s: EventStream) -> Vec<Item> {
    s.collect().await
}

async fn stream_of(b: &OllamaBackend) -> Vec<Item> {
    collect(b.chat_stream(chat_request()).await.unwrap()).await
}

fn last_error(items: &[Item]) -> &BackendError {
    match items.last() {
        Some(Err(e)) => e,
        other => panic!("expected an error at the end, got {other:?}"),
    }
}

#[tokio::test]
async fn whole_chat_maps_options_and_never_sends_num_ctx() {
    let f = FakeUpstream::ollama().await.unwrap();
    let mut cfg = config(&f);
    cfg.keep_alive = Some("30m".into());
    let c = backend(cfg).chat(chat_request()).await.unwrap();
    assert_eq!(
        (c.text.as_str(), c.finish_reason, c.usage),
        ("Hello, world!", FinishReason::Stop, Some(Usage::new(5, 4, None)))
    );

    let r = f.last_request(CHAT).unwrap();
    assert_eq!(r.header("x-request-id"), Some("req-7"));
    let body = r.json();
    assert_eq!(
        (body["model"].clone(), body["stream"].clone(), body["keep_alive"].clone()),
        (json!("llama3.2"), json!(false), json!("30m"))
    );
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    let o = &body["options"];
    assert_eq!(
        (o["num_predict"].clone(), o["seed"].clone(), o["stop"].clone()),
        (json!(32), json!(3), json!(["\n\n"]))
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("num_ctx"), "{body}");
}

#[tokio::test]
async fn stream_yields_lines_as_events() {
    let f = FakeUpstream::ollama().await.unwrap();
    let items = stream_of(&backend(config(&f))).await;
    let expected = vec![
        delta("Hello"),
        delta(","),
        delta(" world"),
        delta("!"),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage::new(5, 4, None)),
    ];
    assert_eq!(oks(&items), expected);
    assert_eq!(f.last_request(CHAT).unwrap().json()["stream"], true);
}

#[tokio::test]
async fn stream_survives_one_byte_writes_and_reports_length() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::ndjson(Kind::Chat, &["é", "🦀"], "length", Some((2, 2))).split(1));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(
        oks(&items),
        vec![
            delta("é"),
            delta("🦀"),
            StreamEvent::Finish(FinishReason::Length),
            StreamEvent::Usage(Usage::new(2, 2, None))
        ]
    );
}

#[tokio::test]
async fn text_input_is_a_raw_generate() {
    let f = FakeUpstream::ollama().await.unwrap();
    let mut req = chat_request();
    req.input = Input::Text("Once".into());
    let b = backend(config(&f));
    assert_eq!(b.chat(req.clone()).await.unwrap().text, "Hello, world!");
    let body = f.last_request("/api/generate").unwrap().json();
    assert_eq!((body["prompt"].clone(), body["raw"].clone()), (json!("Once"), json!(true)));
    let items = collect(b.chat_stream(req).await.unwrap()).await;
    assert_eq!(items.len(), 6);
}

#[tokio::test]
async fn error_line_mid_stream_ends_with_an_error() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::ndjson_error_after(Kind::Chat, &["a", "b"], 1, "llama runner process has terminated"));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(oks(&items[..1]), [delta("a")]);
    let e = last_error(&items);
    assert!(matches!(e, BackendError::Status { message, .. } if message.contains("runner process")), "{e:?}");
    assert_eq!(e.blame(), Blame::Upstream);
}

#[tokio::test]
async fn stream_dying_midway_is_a_protocol_error() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::ndjson(Kind::Chat, &["a", "b", "c"], "stop", None).die_after(2));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(oks(&items[..2]), [delta("a"), delta("b")]);
    assert!(matches!(last_error(&items), BackendError::Protocol(m) if m.contains("before it finished")));
}

#[tokio::test]
async fn http_errors_carry_ollamas_message() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::error(404, "model 'llama3.2' not found, try pulling it first"));
    let e = backend(config(&f)).chat_stream(chat_request()).await.err().unwrap();
    assert!(
        matches!(&e, BackendError::Status { status: 404, message, .. } if message.contains("try pulling")),
        "{e:?}"
    );
    assert_eq!((e.blame(), e.retryable()), (Blame::Upstream, false));
}

#[tokio::test]
async fn tool_calls_come_back_in_openai_shape() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::tool_call("get_weather", &json!({"city": "Paris"})));
    let c = backend(config(&f)).chat(chat_request()).await.unwrap();
    assert_eq!(c.finish_reason, FinishReason::ToolCalls);
    let call = &c.tool_calls.unwrap()[0];
    assert_eq!((call["type"].clone(), call["function"]["name"].clone()), (json!("function"), json!("get_weather")));
    assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
}

#[tokio::test]
async fn stall_mid_stream_hits_the_inter_token_timeout() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::ndjson(Kind::Chat, &["a", "b"], "stop", None).stall_after(1));
    let mut cfg = config(&f);
    cfg.inter_token_timeout_ms = 100;
    let items = stream_of(&backend(cfg)).await;
    assert_eq!(oks(&items[..1]), [delta("a")]);
    assert!(matches!(last_error(&items), BackendError::Timeout(TimeoutKind::InterToken)));
}

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_request() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.push(CHAT, fake::ndjson(Kind::Chat, &["a", "b"], "stop", None).stall_after(1));
    let mut s = backend(config(&f)).chat_stream(chat_request()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), delta("a"));
    drop(s);
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
}

#[tokio::test]
async fn health_checks_pulled_and_loaded_models() {
    let f = FakeUpstream::ollama().await.unwrap();
    assert_eq!(backend(config(&f)).health().await, Health::Healthy);

    let mut cfg = config(&f);
    cfg.models = Some(vec!["llama3.2".into()]);
    assert_eq!(backend(cfg.clone()).health().await, Health::Healthy, "lazy loading: not loaded is fine by default");
    cfg.require_loaded = true;
    let b = backend(cfg.clone());
    assert_eq!(b.health().await, Health::NotReady("model llama3.2 is not loaded".into()));
    f.on("/api/ps", fake::ps(&["llama3.2:latest"]));
    assert_eq!(b.health().await, Health::Healthy);
    assert_eq!(b.loaded_models().await.unwrap(), vec!["llama3.2:latest"]);

    cfg.models = Some(vec!["qwen2.5:7b".into()]);
    assert_eq!(backend(cfg).health().await, Health::NotReady("model qwen2.5:7b is not pulled".into()));
    f.on("/api/tags", Reply::Close);
    assert!(matches!(backend(config(&f)).health().await, Health::Unhealthy(_)));
}

#[tokio::test]
async fn models_lists_pulled_models() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.on("/api/tags", fake::tags(&["a:latest", "b:7b"]));
    assert_eq!(backend(config(&f)).models().await.unwrap(), vec!["a:latest", "b:7b"]);
}
