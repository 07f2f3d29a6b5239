//! Black-box tests of the OpenAI-compatible adapter against the testkit's fake upstream on
//! `127.0.0.1:0`: request mapping, whole and streamed answers, every injected fault → the right
//! `BackendError` (with blame and retryability), timeouts, cancellation, health and models.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_backends::{OpenAiBackend, OpenAiConfig};
use ferrogate_core::{
    Backend, BackendError, Blame, EventStream, GenParams, Health, InferenceRequest, Input, StreamEvent, TimeoutKind,
};
use ferrogate_protocol::openai::{ChatMessage, FinishReason, Role, Usage};
use ferrogate_testkit::upstream::{self as fake, FakeUpstream, Reply, StreamReply};
use futures::StreamExt;
use serde_json::json;

const CHAT: &str = "/v1/chat/completions";
const SECOND: Duration = Duration::from_secs(1);

type Item = Result<StreamEvent, BackendError>;

fn config(f: &FakeUpstream) -> OpenAiConfig {
    OpenAiConfig::new(f.url("/v1"))
}

fn backend(cfg: OpenAiConfig) -> OpenAiBackend {
    OpenAiBackend::new("up", cfg).unwrap()
}

/// A backend speaking HTTP/2 with prior knowledge over one connection.
fn h2_backend(f: &FakeUpstream) -> OpenAiBackend {
    let mut cfg = config(f);
    cfg.http2_prior_knowledge = true;
    cfg.http2_connections = 1;
    backend(cfg)
}

fn chat_request() -> InferenceRequest {
    InferenceRequest {
        request_id: "req-42".into(),
        model: "upstream-model".into(),
        input: Input::Chat { messages: vec![ChatMessage::new(Role::User, "hi")], tools: None, tool_choice: None },
        params: GenParams { temperature: Some(0.3), max_tokens: Some(16), ..GenParams::default() },
        extra: json!({"logit_bias": {"50256": -100}}).as_object().unwrap().clone(),
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

async fn stream_of(b: &OpenAiBackend) -> Vec<Item> {
    collect(b.chat_stream(chat_request()).await.unwrap()).await
}

fn default_events() -> Vec<StreamEvent> {
    vec![
        delta("Hello"),
        delta(","),
        delta(" world"),
        delta("!"),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage::new(5, 4, None)),
    ]
}

fn last_error(items: &[Item]) -> &BackendError {
    match items.last() {
        Some(Err(e)) => e,
        other => panic!("expected an error at the end, got {other:?}"),
    }
}

// === requests and answers ===

#[tokio::test]
async fn non_stream_maps_the_request_and_reads_usage() {
    let f = FakeUpstream::openai().await.unwrap();
    let mut cfg = config(&f);
    cfg.api_key = Some("sk-test".into());
    cfg.headers.insert("x-tenant".into(), "t1".into());
    let c = backend(cfg).chat(chat_request()).await.unwrap();
    assert_eq!((c.text.as_str(), c.finish_reason), ("Hello, world!", FinishReason::Stop));
    assert_eq!(c.usage, Some(Usage::new(5, 4, None)));

    let r = f.last_request(CHAT).unwrap();
    assert_eq!(r.header("x-request-id"), Some("req-42"));
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("x-tenant"), Some("t1"));
    // One Host header, the upstream's address (made once per backend, not by the client).
    assert_eq!(r.headers.get_all("host").iter().collect::<Vec<_>>(), [f.addr().to_string().as_str()]);
    let body = r.json();
    assert_eq!(body["model"], "upstream-model");
    assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!((body["temperature"].as_f64().unwrap() * 10.0).round(), 3.0);
    assert_eq!(body["max_tokens"], 16);
    assert_eq!(body["logit_bias"], json!({"50256": -100}), "extra passed through");
    assert!(body.get("stream").is_none() && body.get("stream_options").is_none());
}

#[tokio::test]
async fn missing_usage_is_none() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_json("hi", None));
    let c = backend(config(&f)).chat(chat_request()).await.unwrap();
    assert_eq!((c.text.as_str(), c.usage), ("hi", None));
}

#[tokio::test]
async fn text_input_goes_to_completions() {
    let f = FakeUpstream::openai().await.unwrap();
    let mut req = chat_request();
    req.input = Input::Text("Once upon".into());
    let c = backend(config(&f)).chat(req.clone()).await.unwrap();
    assert_eq!(c.text, "Hello, world!");
    assert_eq!(f.last_request("/v1/completions").unwrap().json()["prompt"], "Once upon");
    let items = collect(backend(config(&f)).chat_stream(req).await.unwrap()).await;
    assert_eq!(oks(&items), default_events());
}

#[tokio::test]
async fn stream_yields_the_event_sequence_and_asks_for_usage() {
    let f = FakeUpstream::openai().await.unwrap();
    assert_eq!(oks(&stream_of(&backend(config(&f))).await), default_events());
    let body = f.last_request(CHAT).unwrap().json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(f.last_request(CHAT).unwrap().header("x-request-id"), Some("req-42"));
}

#[tokio::test]
async fn stream_survives_one_byte_writes() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["Hé", "🦀", "\r\n"], Some((1, 3))).split(1));
    let items = stream_of(&backend(config(&f))).await;
    let expected = vec![
        delta("Hé"),
        delta("🦀"),
        delta("\r\n"),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage::new(1, 3, None)),
    ];
    assert_eq!(oks(&items), expected);
}

#[tokio::test]
async fn stream_answered_whole_is_replayed_as_events() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_json("whole", Some((2, 1))));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(
        oks(&items),
        vec![delta("whole"), StreamEvent::Finish(FinishReason::Stop), StreamEvent::Usage(Usage::new(2, 1, None))]
    );
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let f = FakeUpstream::openai().await.unwrap();
    let b = backend(config(&f));
    for _ in 0..3 {
        b.chat(chat_request()).await.unwrap();
    }
    assert_eq!(f.accepted_connections(), 1);
}

#[tokio::test]
async fn finished_streams_give_their_connection_back_to_the_pool() {
    let f = FakeUpstream::openai().await.unwrap();
    let b = backend(config(&f));
    for _ in 0..3 {
        assert_eq!(oks(&stream_of(&b).await), default_events());
    }
    assert_eq!(f.accepted_connections(), 1);
}

#[tokio::test]
async fn http2_prior_knowledge_carries_concurrent_streams_on_one_connection() {
    let f = FakeUpstream::openai().await.unwrap();
    // Each answer waits, so the three requests are in flight together: over HTTP/1.1 they
    // would need three connections.
    let slow =
        || Reply::Delayed(Duration::from_millis(300), Box::new(fake::chat_sse(&["a", "b"], Some((1, 2))).into()));
    for _ in 0..3 {
        f.push(CHAT, slow());
    }
    let b = h2_backend(&f);
    let (x, y, z) = tokio::join!(stream_of(&b), stream_of(&b), stream_of(&b));
    let expected = vec![
        delta("a"),
        delta("b"),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Usage(Usage::new(1, 2, None)),
    ];
    for items in [x, y, z] {
        assert_eq!(oks(&items), expected);
    }
    assert_eq!(f.accepted_connections(), 1, "one shared HTTP/2 connection");
    let seen = f.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|r| r.version == http::Version::HTTP_2),
        "{:?}",
        seen.iter().map(|r| r.version).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn http2_streams_are_spread_over_the_configured_connections() {
    let f = FakeUpstream::openai().await.unwrap();
    let slow = || Reply::Delayed(Duration::from_millis(300), Box::new(fake::chat_sse(&["a"], Some((1, 1))).into()));
    for _ in 0..8 {
        f.push(CHAT, slow());
    }
    let mut cfg = config(&f);
    cfg.http2_prior_knowledge = true;
    assert_eq!(cfg.http2_connections, 4, "the default");
    let b = backend(cfg);
    let all = futures::future::join_all((0..8).map(|_| stream_of(&b))).await;
    assert!(all.iter().all(|items| items.iter().all(Result::is_ok)));
    // Eight streams in flight at once, two per connection.
    assert_eq!(f.accepted_connections(), 4);
    assert!(f.requests().iter().all(|r| r.version == http::Version::HTTP_2));
}

#[tokio::test]
async fn an_http2_reader_that_falls_behind_by_many_small_frames_is_slowed_not_cut() {
    // h2 closes a connection (ENHANCE_YOUR_CALM "too_many_data_frames") whose small DATA frames
    // pile up unread beyond a budget of half its connection window. A gateway that falls
    // behind — thousands of streams on one connection, both cores busy — reads late; at hyper's
    // 5 MB window the budget (2.5 MB, ~255 B per 1-byte frame) would cut every stream on the
    // connection. Here one stream's ~20,000 one-byte frames (5 MB of that budget) sit unread.
    let f = FakeUpstream::openai().await.unwrap();
    let pieces = vec!["a"; 150];
    f.push(CHAT, fake::chat_sse(&pieces, Some((1, 150))).split(1));
    let b = h2_backend(&f);
    let mut s = b.chat_stream(chat_request()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), delta("a"));
    // Every frame is on its way before the reader looks again.
    let sent = f.wait_for_streams_sent(1, Duration::from_secs(10)).await;
    assert!(sent, "the upstream could not finish sending: {} stream(s) cut", f.disconnects());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rest = collect(s).await;
    assert!(rest.iter().all(Result::is_ok), "{:?}", rest.iter().find(|i| i.is_err()));
    assert_eq!(oks(&rest).iter().filter(|e| **e == delta("a")).count(), 149);
}

#[test]
fn http2_connections_must_be_between_1_and_256() {
    for (n, ok) in [(0, false), (1, true), (256, true), (257, false)] {
        let mut cfg = OpenAiConfig::new("http://127.0.0.1:1/v1");
        cfg.http2_connections = n;
        let problems = cfg.problems();
        assert_eq!(problems.is_empty(), ok, "{n}: {problems:?}");
    }
}

#[tokio::test]
async fn without_prior_knowledge_plain_http_is_http1() {
    let f = FakeUpstream::openai().await.unwrap();
    assert_eq!(oks(&stream_of(&backend(config(&f))).await), default_events());
    assert_eq!(f.last_request(CHAT).unwrap().version, http::Version::HTTP_11);
}

#[tokio::test]
async fn dropping_an_http2_stream_resets_it_upstream_and_keeps_the_connection() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["a", "b"], None).stall_after(2));
    let b = h2_backend(&f);
    let mut s = b.chat_stream(chat_request()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), delta("a"));
    drop(s);
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the stream end within 1 s");
    // The connection itself lives on for the next request.
    assert_eq!(oks(&stream_of(&b).await), default_events());
    assert_eq!(f.accepted_connections(), 1);
}

#[tokio::test]
async fn http2_prior_knowledge_against_an_http1_only_server_fails_fast_and_clearly() {
    // An HTTP/1.1-only server (as uvicorn or llama.cpp's is): it answers the HTTP/2 preface with
    // a 400 and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    let mut cfg = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"));
    cfg.http2_prior_knowledge = true;
    let t = Instant::now();
    let err = match tokio::time::timeout(Duration::from_secs(5), backend(cfg).chat(chat_request())).await {
        Ok(Err(e)) => e,
        other => panic!("expected an error within 5 s, got {other:?}"),
    };
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let text = err.to_string();
    assert!(text.contains("http2_prior_knowledge = true"), "{text}");
    assert!(err.retryable(), "nothing reached the client: another backend may be tried");
}

// === faults ===

#[tokio::test]
async fn stream_dying_midway_is_a_protocol_error() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["a", "b", "c"], None).die_after(3));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(oks(&items[..2]), [delta("a"), delta("b")]);
    let e = last_error(&items);
    assert!(matches!(e, BackendError::Protocol(m) if m.contains("before it finished")), "{e:?}");
    assert_eq!((e.blame(), e.retryable()), (Blame::Upstream, false));
}

#[tokio::test]
async fn clean_end_without_finish_is_a_protocol_error() {
    let f = FakeUpstream::openai().await.unwrap();
    let mut s = fake::chat_sse(&["a"], None);
    s.frames.truncate(2);
    f.push(CHAT, s);
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(items.len(), 2);
    assert!(
        matches!(last_error(&items), BackendError::Protocol(m) if m == "upstream closed the stream before it finished")
    );
}

#[tokio::test]
async fn http_500_carries_the_upstream_message() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::openai_error(500, "engine crashed"));
    let b = backend(config(&f));
    for e in [b.chat(chat_request()).await.unwrap_err(), b.chat_stream(chat_request()).await.err().unwrap()] {
        assert!(
            matches!(&e, BackendError::Status { status: 500, message, retry_after: None } if message == "engine crashed"),
            "{e:?}"
        );
        assert_eq!((e.blame(), e.retryable()), (Blame::Upstream, true));
    }
}

#[tokio::test]
async fn http_429_parses_retry_after() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::rate_limited(7));
    let e = backend(config(&f)).chat_stream(chat_request()).await.err().unwrap();
    assert!(
        matches!(e, BackendError::Status { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );
    assert_eq!((e.blame(), e.retryable()), (Blame::Upstream, true));
}

#[tokio::test]
async fn http_400_is_the_callers_fault() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::openai_error(400, "'temperature' is invalid"));
    let e = backend(config(&f)).chat(chat_request()).await.unwrap_err();
    assert_eq!((e.blame(), e.retryable()), (Blame::Caller, false));
}

#[tokio::test]
async fn huge_error_bodies_are_cut_to_a_bounded_message() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, Reply::text(502, "x".repeat(100_000)));
    let e = backend(config(&f)).chat(chat_request()).await.unwrap_err();
    let BackendError::Status { status: 502, message, .. } = e else { panic!("{e:?}") };
    assert!(message.chars().count() <= 501, "{}", message.len());
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::garbage());
    f.push(CHAT, fake::garbage_sse());
    let b = backend(config(&f));
    assert!(matches!(b.chat(chat_request()).await, Err(BackendError::Protocol(_))));
    let items = stream_of(&b).await;
    assert_eq!(oks(&items[..1]), [delta("ok")]);
    assert!(matches!(items[1], Err(BackendError::Protocol(_))));
    assert_eq!(items.len(), 2, "the stream ends after the error");
}

#[tokio::test]
async fn error_event_mid_stream_is_an_error_item() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::error_event_sse("model overloaded"));
    let items = stream_of(&backend(config(&f))).await;
    assert_eq!(oks(&items[..1]), [delta("partial")]);
    assert!(
        matches!(last_error(&items), BackendError::Status { status: 500, message, .. } if message == "model overloaded")
    );
    assert_eq!(items.len(), 2);
}

#[tokio::test]
async fn connection_closed_without_a_response_is_retryable() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Close);
    let b = backend(config(&f));
    for e in [b.chat(chat_request()).await.unwrap_err(), b.chat_stream(chat_request()).await.err().unwrap()] {
        assert!(matches!(e, BackendError::Closed(_)), "{e:?}");
        assert_eq!((e.blame(), e.retryable()), (Blame::Upstream, true));
    }
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b = backend(OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1")));
    let e = b.chat(chat_request()).await.unwrap_err();
    assert!(matches!(e, BackendError::Connect(_)) && e.retryable(), "{e:?}");
    assert!(matches!(b.health().await, Health::Unhealthy(_)));
}

// === timeouts ===

fn short(f: &FakeUpstream, first: u64, inter: u64, total: u64) -> OpenAiBackend {
    let mut cfg = config(f);
    (cfg.first_token_timeout_ms, cfg.inter_token_timeout_ms, cfg.total_timeout_ms) = (first, inter, total);
    backend(cfg)
}

#[tokio::test]
async fn stall_before_any_byte_hits_first_token_then_total() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let b = short(&f, 100, 100, 300);
    let t = Instant::now();
    assert!(matches!(
        b.chat_stream(chat_request()).await.err().unwrap(),
        BackendError::Timeout(TimeoutKind::FirstToken)
    ));
    assert!(t.elapsed() < Duration::from_millis(250), "{:?}", t.elapsed());
    let e = b.chat(chat_request()).await.unwrap_err();
    assert!(matches!(e, BackendError::Timeout(TimeoutKind::Total)) && !e.retryable());
}

#[tokio::test]
async fn headers_without_events_hit_the_first_token_timeout() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, StreamReply::new("text/event-stream", vec![]).stall_after(0));
    let items = stream_of(&short(&f, 100, 5_000, 5_000)).await;
    assert!(matches!(last_error(&items), BackendError::Timeout(TimeoutKind::FirstToken)));
}

#[tokio::test]
async fn stall_mid_stream_hits_the_inter_token_timeout() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["a", "b"], None).stall_after(2));
    let items = stream_of(&short(&f, 5_000, 100, 5_000)).await;
    assert_eq!(oks(&items[..1]), [delta("a")]);
    assert!(matches!(last_error(&items), BackendError::Timeout(TimeoutKind::InterToken)));
}

#[tokio::test]
async fn slow_steady_stream_hits_the_total_timeout() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["a"; 40], None).delay(Duration::from_millis(20)));
    let t = Instant::now();
    let items = stream_of(&short(&f, 5_000, 5_000, 200)).await;
    assert!(matches!(last_error(&items), BackendError::Timeout(TimeoutKind::Total)));
    assert!(t.elapsed() < Duration::from_millis(400), "{:?}", t.elapsed());
}

// === cancellation ===

#[tokio::test]
async fn dropping_a_stream_closes_the_upstream_request() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, fake::chat_sse(&["a", "b"], None).stall_after(2));
    let mut s = backend(config(&f)).chat_stream(chat_request()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), delta("a"));
    drop(s);
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
}

#[tokio::test]
async fn dropping_a_whole_request_closes_the_upstream_request() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let b = backend(config(&f));
    let task = tokio::spawn(async move { b.chat(chat_request()).await });
    assert!(f.wait_for_requests(1, SECOND).await);
    task.abort();
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
}

// === health and models ===

#[tokio::test]
async fn health_and_models_from_the_upstream() {
    let f = FakeUpstream::openai().await.unwrap();
    let b = backend(config(&f));
    assert_eq!(b.health().await, Health::Healthy);
    assert_eq!(b.models().await.unwrap(), vec!["fake-model"]);
    f.on("/v1/models", fake::openai_error(503, "loading"));
    assert!(matches!(b.health().await, Health::Unhealthy(m) if m.contains("loading")));
    f.on("/v1/models", Reply::Stall);
    let mut cfg = config(&f);
    cfg.health_timeout_ms = 100;
    assert!(matches!(backend(cfg).health().await, Health::Unhealthy(_)));
}

#[tokio::test]
async fn a_static_model_list_needs_only_reachability() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on("/v1/models", Reply::text(404, "not found"));
    let mut cfg = config(&f);
    cfg.models = Some(vec!["m1".into(), "m2".into()]);
    let b = backend(cfg);
    assert_eq!(b.models().await.unwrap(), vec!["m1", "m2"]);
    assert_eq!(b.health().await, Health::Healthy);
    f.on("/v1/models", fake::openai_error(401, "bad key"));
    assert!(!b.health().await.is_healthy());
}
