//! Gateway-level fault tests: the real server on 127.0.0.1:0 in front of a fault-injecting fake
//! OpenAI upstream, over real HTTP. They prove the streaming contract (a proper status before the
//! first byte; after it an OpenAI-shaped error event and `[DONE]`, never a silent clean end), the
//! error statuses of upstream failures, cancellation of upstream work on client disconnect,
//! request-id and model propagation, usage accounting, load spreading and SSE keep-alives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{
    self as fake, DEFAULT_PIECES, DEFAULT_USAGE, FakeUpstream, Reply, StreamReply, chat_sse, sse, sse_done,
};
use futures::StreamExt;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";
const SECOND: Duration = Duration::from_secs(1);
const NO_RETRIES: &str = "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 0\nfailure_rate = 0.0\n";

// === helpers ===

/// A gateway whose deployment `m` is served by backend `up` over `fake`. Retries and the
/// circuit breaker are off: these tests map each upstream failure as it comes (retries and
/// breakers have their own tests in `resilience.rs`).
async fn gateway(fake: &FakeUpstream, backend_extra: &str, server_extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "{NO_RETRIES}[server]\n{server_extra}\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n{backend_extra}\n\
         [deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    ))
    .await
}

/// Fails the test instead of hanging when the gateway never answers.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn stream_chat() -> Value {
    chat(json!({"stream": true}))
}

/// The whole body as text (bounded in time).
async fn body_text(res: reqwest::Response) -> String {
    within(Duration::from_secs(5), "reading the body", res.text()).await.unwrap()
}

/// Every SSE `data:` payload of `raw`.
fn sse_data(raw: &str) -> Vec<String> {
    let mut dec = SseDecoder::new();
    let mut out: Vec<String> = dec.push(raw.as_bytes()).into_iter().map(|e| e.data).collect();
    out.extend(dec.finish().map(|e| e.data));
    out
}

/// The content deltas of chat chunks, in order.
fn contents(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Asserts the stream ended with an OpenAI-shaped error event then `[DONE]`, with no finish
/// reason before it (it did not end cleanly); returns the error object.
fn assert_error_then_done(events: &[String], fake: &FakeUpstream) -> Value {
    assert!(events.len() >= 2, "{events:?}");
    assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
    let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_openai_error(&err, fake);
    for e in &events[..events.len() - 2] {
        let c: Value = serde_json::from_str(e).unwrap();
        assert!(c.get("error").is_none(), "one error event only: {events:?}");
        assert!(c["choices"][0]["finish_reason"].is_null(), "no finish reason before the error: {events:?}");
    }
    err
}

/// `{"error":{"message","type","param","code"}}`, without the upstream's address.
fn assert_openai_error(v: &Value, fake: &FakeUpstream) {
    let e = &v["error"];
    let msg = e["message"].as_str().unwrap_or_else(|| panic!("no error message: {v}"));
    assert!(!msg.is_empty(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "param and code keys: {v}");
    let port = fake.addr().port().to_string();
    assert!(!msg.contains("127.0.0.1") && !msg.contains(&port), "upstream address leaked: {msg}");
}

/// Status, `Retry-After`, and the JSON body of an error response.
async fn error_of(res: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let v: Value = serde_json::from_str(&body_text(res).await).unwrap();
    (status, retry, v)
}

/// Polls the gateway's in-flight count down to zero.
async fn wait_idle(gw: &TestGateway, within: Duration) {
    let t0 = Instant::now();
    while gw.state().inflight() > 0 {
        assert!(t0.elapsed() < within, "{} request(s) still in flight after {within:?}", gw.state().inflight());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn usage_of(chunk: &Value) -> (u64, u64, u64) {
    let u = &chunk["usage"];
    (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
    )
}

// === 1. upstream dies mid-stream ===

#[tokio::test]
async fn upstream_dying_mid_stream_ends_with_an_error_event_and_done() {
    let f = FakeUpstream::openai().await.unwrap();
    let k = 2;
    // The role frame, then k content frames, then the connection drops.
    f.on(CHAT, chat_sse(&["a", "b", "c", "d"], Some(DEFAULT_USAGE)).die_after(1 + k));
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["a", "b"], "{events:?}");
    let err = assert_error_then_done(&events, &f);
    assert_eq!(err["error"]["code"], "backend_error", "{err}");
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

/// A body that ends cleanly (terminating chunk) but before the upstream's finish reason and
/// `[DONE]` is a failure too, not a clean end.
#[tokio::test]
async fn clean_eof_without_finish_is_an_error_event_not_a_clean_end() {
    let f = FakeUpstream::openai().await.unwrap();
    let mut reply = chat_sse(&["a", "b"], None);
    reply.frames.truncate(3);
    f.on(CHAT, reply);
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["a", "b"]);
    assert_error_then_done(&events, &f);
    gw.shutdown().await;
}

/// The same contract holds for legacy completions and the simple `/stream` endpoint.
#[tokio::test]
async fn every_stream_endpoint_ends_a_dead_upstream_with_error_and_done() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&["a", "b", "c"], None).die_after(2));
    f.on("/v1/completions", fake::completion_sse(&["a", "b", "c"], None).die_after(1));
    let gw = gateway(&f, "", "").await;
    let legacy = json!({"model": "m", "prompt": "once upon", "stream": true});
    for (path, body) in [("/v1/completions", legacy), ("/stream", json!({"prompt": "hi"}))] {
        let res = gw.post_json(path, &body).await;
        assert_eq!(res.status(), 200, "{path}");
        let events = sse_data(&body_text(res).await);
        let texts: Vec<String> = events
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|v| v["choices"][0]["text"].as_str().or(v["text"].as_str()).map(str::to_owned))
            .collect();
        assert_eq!(texts, ["a"], "{path}: {events:?}");
        assert_eq!(events.last().unwrap(), "[DONE]", "{path}: {events:?}");
        let err: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
        assert_openai_error(&err, &f);
    }
    gw.shutdown().await;
}

// === 2. stall before the first byte ===

#[tokio::test]
async fn stall_before_first_byte_is_504_streaming_and_not() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    // Streams wait first_token_timeout_ms for their first event; a whole answer is bounded by
    // total_timeout_ms (see OpenAiConfig).
    let gw = gateway(&f, "first_token_timeout_ms = 300\ntotal_timeout_ms = 600", "").await;

    let t0 = Instant::now();
    let res = within(Duration::from_secs(5), "stalled stream", gw.post_json(CHAT, &stream_chat())).await;
    let (status, _, v) = error_of(res).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert_openai_error(&v, &f);
    assert!(t0.elapsed() < Duration::from_millis(1500), "first-token timeout took {:?}", t0.elapsed());

    let t0 = Instant::now();
    let res = within(Duration::from_secs(5), "stalled request", gw.post_json(CHAT, &chat(json!({})))).await;
    let (status, _, v) = error_of(res).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert_openai_error(&v, &f);
    assert!(t0.elapsed() < Duration::from_secs(2), "total timeout took {:?}", t0.elapsed());
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

/// Response headers arrive but no token does — no frame at all, or only the role chunk (which
/// carries no content): still before the client's first byte → 504, bounded by the first-token
/// timeout (not the inter-token one).
#[tokio::test]
async fn headers_or_role_without_a_token_is_504() {
    let f = FakeUpstream::openai().await.unwrap();
    f.push(CHAT, StreamReply::new("text/event-stream", vec![]).stall_after(0));
    f.push(CHAT, chat_sse(&["never"], None).stall_after(1));
    let gw = gateway(&f, "first_token_timeout_ms = 300\ninter_token_timeout_ms = 30000", "").await;
    for _ in 0..2 {
        let res = within(Duration::from_secs(5), "silent stream", gw.post_json(CHAT, &stream_chat())).await;
        let (status, _, v) = error_of(res).await;
        assert_eq!(status, 504, "{v}");
        assert_eq!(v["error"]["code"], "upstream_timeout");
        assert!(v["error"]["message"].as_str().unwrap().contains("first_token"), "{v}");
    }
    gw.shutdown().await;
}

/// A whole request is also bounded by the server's own `request_timeout_secs`.
#[tokio::test]
async fn server_request_timeout_bounds_whole_requests() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let gw = gateway(&f, "", "request_timeout_secs = 1").await;
    let t0 = Instant::now();
    let res = within(Duration::from_secs(5), "stalled request", gw.post_json(CHAT, &chat(json!({})))).await;
    let (status, _, v) = error_of(res).await;
    assert_eq!(status, 504, "{v}");
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream request was not closed");
    gw.shutdown().await;
}

// === 3. stall mid-stream ===

#[tokio::test]
async fn stall_mid_stream_ends_with_an_inter_token_timeout_event() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&["a", "b"], None).stall_after(2));
    let gw = gateway(&f, "inter_token_timeout_ms = 300", "").await;
    let t0 = Instant::now();
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(contents(&events), ["a"]);
    let err = assert_error_then_done(&events, &f);
    assert_eq!(err["error"]["code"], "upstream_timeout", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("inter_token"), "{err}");
    // The gateway closed the stalled upstream request when it gave up.
    assert!(f.wait_for_disconnects(1, SECOND).await, "upstream request not closed after the timeout");
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

// === 4. upstream error statuses and garbage ===

#[tokio::test]
async fn upstream_500_is_502_backend_error() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::openai_error(500, "CUDA error at 10.1.2.3:8000"));
    let gw = gateway(&f, "", "").await;
    for body in [chat(json!({})), stream_chat()] {
        let (status, _, v) = error_of(gw.post_json(CHAT, &body).await).await;
        assert_eq!(status, 502, "{body}: {v}");
        assert_eq!(v["error"]["code"], "backend_error");
        assert_openai_error(&v, &f);
        assert!(!v["error"]["message"].as_str().unwrap().contains("10.1.2.3"), "internal text leaked: {v}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_429_is_503_with_retry_after() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::rate_limited(7));
    let gw = gateway(&f, "", "").await;
    for body in [chat(json!({})), stream_chat()] {
        let (status, retry, v) = error_of(gw.post_json(CHAT, &body).await).await;
        assert_eq!(status, 503, "429 is reserved for the gateway's own limits: {v}");
        assert_eq!(retry.as_deref(), Some("7"), "the upstream's Retry-After is passed on");
        assert_eq!(v["error"]["code"], "backend_overloaded");
        assert_openai_error(&v, &f);
    }
    gw.shutdown().await;
}

/// An upstream 503 (Ollama's "server busy", a loading vLLM) is "overloaded or loading": the
/// client gets 503 and the upstream's Retry-After, as the README's error table promises.
#[tokio::test]
async fn upstream_503_is_503_with_retry_after() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::openai_error(503, "server busy, please try again").with_header("retry-after", "3"));
    let gw = gateway(&f, "", "").await;
    let (status, retry, v) = error_of(gw.post_json(CHAT, &chat(json!({}))).await).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(retry.as_deref(), Some("3"), "{v}");
    assert_openai_error(&v, &f);
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_400_is_the_callers_400_with_its_message() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::openai_error(400, "logit_bias: token 99999 is out of range"));
    let gw = gateway(&f, "", "").await;
    for body in [chat(json!({})), stream_chat()] {
        let (status, _, v) = error_of(gw.post_json(CHAT, &body).await).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("token 99999 is out of range"), "{v}");
        assert_openai_error(&v, &f);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_json_body_is_502() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::garbage());
    let gw = gateway(&f, "", "").await;
    let (status, _, v) = error_of(gw.post_json(CHAT, &chat(json!({}))).await).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "backend_error");
    assert_openai_error(&v, &f);
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_sse_after_the_first_event_is_an_error_event() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::garbage_sse());
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["ok"]);
    let err = assert_error_then_done(&events, &f);
    assert_eq!(err["error"]["code"], "backend_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_sse_before_the_first_event_is_502() {
    let f = FakeUpstream::openai().await.unwrap();
    let frames = vec![Bytes::from_static(b"data: {not json\n\n"), sse_done()];
    f.on(CHAT, StreamReply::new("text/event-stream", frames));
    let gw = gateway(&f, "", "").await;
    let (status, _, v) = error_of(gw.post_json(CHAT, &stream_chat()).await).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "backend_error");
    assert_openai_error(&v, &f);
    gw.shutdown().await;
}

/// An upstream event over 4 MiB is a protocol error, before the first byte (502) and after it
/// (an error event) — issue 17: it used to be buffered without bound.
#[tokio::test]
async fn an_oversized_upstream_event_is_a_protocol_error() {
    let f = FakeUpstream::openai().await.unwrap();
    let huge = Bytes::from(format!("data: {{\"x\": \"{}\"}}\n\n", "a".repeat(5 * 1024 * 1024)));
    f.push(CHAT, StreamReply::new("text/event-stream", vec![huge.clone(), sse_done()]).split(64 * 1024));
    let first = sse(&json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": null}]}));
    f.push(CHAT, StreamReply::new("text/event-stream", vec![first, huge, sse_done()]).split(64 * 1024));
    let gw = gateway(&f, "", "").await;
    let (status, _, v) = error_of(gw.post_json(CHAT, &stream_chat()).await).await;
    assert_eq!((status, v["error"]["code"].as_str()), (502, Some("backend_error")), "{v}");
    assert_openai_error(&v, &f);
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["ok"]);
    let err = assert_error_then_done(&events, &f);
    assert_eq!(err["error"]["code"], "backend_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_error_event_mid_stream_is_passed_on_as_an_error_event() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, fake::error_event_sse("engine crashed on 10.9.8.7"));
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["partial"]);
    let err = assert_error_then_done(&events, &f);
    assert!(!err["error"]["message"].as_str().unwrap().contains("10.9.8.7"), "internal text leaked: {err}");
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_closed_without_a_response_is_502() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Close);
    let gw = gateway(&f, "", "").await;
    for body in [chat(json!({})), stream_chat()] {
        let res = within(Duration::from_secs(5), "closed upstream", gw.post_json(CHAT, &body)).await;
        let (status, _, v) = error_of(res).await;
        assert_eq!(status, 502, "{body}: {v}");
        assert_openai_error(&v, &f);
    }
    gw.shutdown().await;
}

// === forwarding ===

/// Each token reaches the client while the upstream is still generating (no buffering).
#[tokio::test]
async fn tokens_are_forwarded_as_they_arrive() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&["a", "b", "c"], None).stall_after(3));
    let gw = gateway(&f, "inter_token_timeout_ms = 30000", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut raw = String::new();
    while contents(&sse_data(&raw)) != ["a", "b"] {
        let chunk = within(Duration::from_secs(2), "tokens sent before the upstream finished", body.next()).await;
        raw.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    drop(body);
    assert!(f.wait_for_disconnects(1, SECOND).await);
    gw.shutdown().await;
}

/// A stream the upstream has already sent whole goes out with the response head in one piece,
/// settled at once (a length-framed body: no pump task, no chunk per frame); one still being
/// generated stays chunked, its ready frames sent with the head.
#[tokio::test]
async fn a_stream_sent_whole_goes_out_with_the_head_and_one_in_progress_stays_chunked() {
    let f = FakeUpstream::openai().await.unwrap();
    let whole: Vec<u8> = chat_sse(&["a", "b", "c"], Some((5, 3))).frames.concat();
    f.push(
        CHAT,
        Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Bytes::from(whole),
        },
    );
    f.push(CHAT, chat_sse(&["x", "y"], None).stall_after(2));
    let gw = gateway(&f, "inter_token_timeout_ms = 30000", "").await;

    let res = gw.post_json(CHAT, &chat(json!({"stream": true, "stream_options": {"include_usage": true}}))).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert!(res.headers().get("content-length").is_some(), "a whole answer is length-framed: {:?}", res.headers());
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), ["a", "b", "c"]);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_of(&last), (5, 3, 8), "settled with the upstream's usage: {last}");

    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("content-length").is_none(), "a stream in progress is chunked: {:?}", res.headers());
    let mut body = res.bytes_stream();
    let mut raw = String::new();
    while contents(&sse_data(&raw)) != ["x"] {
        let chunk = within(Duration::from_secs(2), "the frames ready before the stall", body.next()).await;
        raw.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    drop(body);
    assert!(f.wait_for_disconnects(1, SECOND).await);
    gw.shutdown().await;
}

/// An upstream stream cut at every byte (mid-line, mid-UTF-8, CRLF) reaches the client intact.
#[tokio::test]
async fn byte_split_upstream_stream_reaches_the_client_intact() {
    let f = FakeUpstream::openai().await.unwrap();
    let pieces = ["Grüße", ", ", "🦀", " ", "日本語", "!"];
    let mut reply = chat_sse(&pieces, Some(DEFAULT_USAGE)).split(1);
    reply.frames = reply
        .frames
        .iter()
        .map(|fr| Bytes::from(String::from_utf8(fr.to_vec()).unwrap().replace('\n', "\r\n")))
        .collect();
    f.on(CHAT, reply);
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &chat(json!({"stream": true, "stream_options": {"include_usage": true}}))).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), pieces);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["usage"]["completion_tokens"], DEFAULT_USAGE.1);
    gw.shutdown().await;
}

// === 5. client disconnect ===

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&["a", "b"], None).stall_after(2));
    let gw = gateway(&f, "inter_token_timeout_ms = 30000", "").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let first = within(Duration::from_secs(5), "first chunk", body.next()).await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "), "{first:?}");
    assert_eq!(gw.state().inflight(), 1);
    drop(body);
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn client_timeout_on_a_whole_request_cancels_the_upstream_request() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let gw = gateway(&f, "", "").await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let res = client.post(gw.url(CHAT)).json(&chat(json!({}))).send().await;
    assert!(res.is_err(), "the client gave up");
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn client_timeout_before_the_first_event_cancels_the_upstream_request() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let gw = gateway(&f, "", "").await;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let res = client.post(gw.url(CHAT)).json(&stream_chat()).send().await;
    assert!(res.is_err(), "the client gave up");
    assert!(f.wait_for_disconnects(1, SECOND).await, "the upstream did not see the disconnect within 1 s");
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

// === 6. propagation and usage ===

#[tokio::test]
async fn request_id_and_mapped_model_reach_the_upstream() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\nupstream_model = \"org/Upstream-7B\"\n",
        f.url("/v1")
    ))
    .await;
    let res =
        gw.http.post(gw.url(CHAT)).header("x-request-id", "req-faults-42").json(&chat(json!({}))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-faults-42");
    assert_eq!(res.headers()["x-ferrogate-backend"], "up");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"], "m", "the client's model name is echoed, not the upstream's");
    let up = f.last_request(CHAT).unwrap();
    assert_eq!(up.header("x-request-id"), Some("req-faults-42"));
    assert_eq!(up.json()["model"], "org/Upstream-7B");
    gw.shutdown().await;
}

/// OpenAI chat chunks pass through as the upstream wrote them (SSE passthrough): a vendor
/// field the gateway does not model reaches the client, while `id` and `model` are the
/// gateway's, and an upstream `"usage":null` is dropped unless the client asked for usage.
#[tokio::test]
async fn chat_chunks_pass_through_with_the_gateways_id_and_model() {
    let f = FakeUpstream::openai().await.unwrap();
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
            "system_fingerprint": "fp-up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": null}))
    };
    let frames = vec![
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel\"lo"}), Value::Null),
        chunk(json!({"content": " there"}), json!("stop")),
        sse(&json!({"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
            "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}})),
        sse_done(),
    ];
    f.on(CHAT, StreamReply::new("text/event-stream", frames));
    let gw = gateway(&f, "", "").await;
    for include_usage in [false, true] {
        let body = chat(json!({"stream": true, "stream_options": {"include_usage": include_usage}}));
        let res = gw.http.post(gw.url(CHAT)).header("x-request-id", "req-pt").json(&body).send().await.unwrap();
        let events = sse_data(&body_text(res).await);
        assert_eq!(contents(&events), ["Hel\"lo", " there"]);
        let chunks: Vec<Value> = events.iter().filter_map(|e| serde_json::from_str(e).ok()).collect();
        let content: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()))
            .collect();
        for c in &content {
            assert_eq!((c["id"].as_str(), c["model"].as_str()), (Some("chatcmpl-req-pt"), Some("m")), "{c}");
            assert_eq!(c["system_fingerprint"], "fp-up", "passed through as written: {c}");
            assert_eq!(c.get("usage").is_some(), include_usage, "{c}");
        }
        assert_eq!(content.last().unwrap()["choices"][0]["finish_reason"], "stop");
        let last = chunks.last().unwrap();
        if include_usage {
            assert_eq!(usage_of(last), (4, 2, 6), "{last}");
        } else {
            assert!(last.get("usage").is_none(), "{last}");
        }
    }
    gw.shutdown().await;
}

/// A whole OpenAI chat completion passes through as the upstream wrote it too: its vendor
/// fields reach the client, `id` and `model` are the gateway's; an answer the gateway must
/// rewrite (no usage: counted locally) is re-encoded.
#[tokio::test]
async fn a_whole_chat_completion_passes_through_with_the_gateways_id_and_model() {
    let f = FakeUpstream::openai().await.unwrap();
    let upstream = json!({"id": "up-1", "object": "chat.completion", "created": 7, "model": "up-model",
        "system_fingerprint": "fp-up", "service_tier": "default",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hel\"lo\n", "reasoning_content": "hm"},
            "logprobs": null, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 3}}});
    f.on(CHAT, Reply::json(200, &upstream));
    let gw = gateway(&f, "", "").await;
    let res =
        gw.http.post(gw.url(CHAT)).header("x-request-id", "req-whole").json(&chat(json!({}))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let v: Value = res.json().await.unwrap();
    let mut expected = upstream.clone();
    (expected["id"], expected["model"]) = (json!("chatcmpl-req-whole"), json!("m"));
    assert_eq!(v, expected, "the upstream's answer with the gateway's id and model");

    // No usage upstream: the gateway counts and writes its own answer (and its own fields only).
    let mut bare = upstream.clone();
    bare.as_object_mut().unwrap().remove("usage");
    f.on(CHAT, Reply::json(200, &bare));
    let v: Value = gw.post_json(CHAT, &chat(json!({}))).await.json().await.unwrap();
    assert_eq!((v["model"].as_str(), v["choices"][0]["message"]["content"].as_str()), (Some("m"), Some("Hel\"lo\n")));
    assert!(v["usage"]["completion_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(
        v.get("system_fingerprint").is_none() && v["choices"][0]["message"].get("reasoning_content").is_none(),
        "{v}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn stream_usage_is_the_upstreams() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "", "").await;
    // The client did not ask for usage: the gateway asks upstream anyway (it settles with it)…
    let res = gw.post_json(CHAT, &stream_chat()).await;
    let events = sse_data(&body_text(res).await);
    assert_eq!(f.last_request(CHAT).unwrap().json()["stream_options"]["include_usage"], true);
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(
        events.iter().filter_map(|e| serde_json::from_str::<Value>(e).ok()).all(|c| c.get("usage").is_none()),
        "no usage chunk or field unless asked: {events:?}"
    );
    // …and when asked, the final chunk carries exactly the upstream's counts.
    let res = gw.post_json(CHAT, &chat(json!({"stream": true, "stream_options": {"include_usage": true}}))).await;
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events), DEFAULT_PIECES);
    assert_eq!(events.last().unwrap(), "[DONE]");
    for e in &events[..events.len() - 1] {
        let c: Value = serde_json::from_str(e).unwrap();
        assert_eq!(c["model"], "m", "the client's model name, not the upstream's: {c}");
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0, "{last}");
    let (p, c) = DEFAULT_USAGE;
    assert_eq!(usage_of(&last), (u64::from(p), u64::from(c), u64::from(p + c)));
    gw.shutdown().await;
}

#[tokio::test]
async fn usage_is_counted_locally_when_the_upstream_reports_none() {
    let f = FakeUpstream::openai().await.unwrap();
    let pieces = ["one", " two", " three", " four", " five", " six"];
    f.on(
        CHAT,
        Reply::dynamic(move |r| {
            if r.wants_stream(false) { chat_sse(&pieces, None).into() } else { fake::chat_json("one two three", None) }
        }),
    );
    let gw = gateway(&f, "", "").await;
    let res = gw.post_json(CHAT, &chat(json!({"stream": true, "stream_options": {"include_usage": true}}))).await;
    let events = sse_data(&body_text(res).await);
    assert_eq!(contents(&events).len(), pieces.len());
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    let (prompt, completion, total) = usage_of(&last);
    assert_eq!(completion, pieces.len() as u64, "one token per content delta: {last}");
    assert!(prompt > 0, "{last}");
    assert_eq!(total, prompt + completion);

    let v: Value = gw.post_json(CHAT, &chat(json!({}))).await.json().await.unwrap();
    let (prompt, completion, total) = usage_of(&v);
    assert!(prompt > 0 && completion > 0, "{v}");
    assert_eq!(total, prompt + completion);
    gw.shutdown().await;
}

#[tokio::test]
async fn every_inference_response_names_its_backend() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "", "").await;
    let legacy = json!({"model": "m", "prompt": "once"});
    let legacy_stream = json!({"model": "m", "prompt": "once", "stream": true});
    let cases = [
        (CHAT, chat(json!({}))),
        (CHAT, stream_chat()),
        ("/v1/completions", legacy),
        ("/v1/completions", legacy_stream),
        ("/generate", json!({"prompt": "hi"})),
        ("/stream", json!({"prompt": "hi"})),
    ];
    for (path, body) in cases {
        let res = gw.post_json(path, &body).await;
        assert_eq!(res.status(), 200, "{path} {body}");
        let backend = res.headers().get("x-ferrogate-backend").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(backend.as_deref(), Some("up"), "{path} {body}: x-ferrogate-backend");
        assert!(res.headers().contains_key("x-request-id") && res.headers().contains_key("x-response-time-ms"));
        body_text(res).await;
    }
    gw.shutdown().await;
}

// === 7. two backends ===

#[tokio::test]
async fn concurrent_streams_spread_over_two_backends() {
    let (fa, fb) = (FakeUpstream::openai().await.unwrap(), FakeUpstream::openai().await.unwrap());
    for f in [&fa, &fb] {
        f.on(CHAT, chat_sse(&["slow"], None).stall_after(2));
    }
    let gw = TestGateway::start(&format!(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [backends.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"a\", \"b\"]\n",
        fa.url("/v1"),
        fb.url("/v1")
    ))
    .await;
    let mut open = Vec::new();
    let mut names = Vec::new();
    for _ in 0..2 {
        let res = within(Duration::from_secs(5), "slow stream", gw.post_json(CHAT, &stream_chat())).await;
        assert_eq!(res.status(), 200);
        names.push(res.headers()["x-ferrogate-backend"].to_str().unwrap().to_owned());
        open.push(res); // keep the stream (and its backend slot) open
    }
    names.sort();
    assert_eq!(names, ["a", "b"], "the second stream goes to the backend with nothing in flight");
    let chats = |f: &FakeUpstream| f.requests().iter().filter(|r| r.path == CHAT).count();
    assert_eq!((chats(&fa), chats(&fb)), (1, 1));
    drop(open);
    assert!(fa.wait_for_disconnects(1, SECOND).await && fb.wait_for_disconnects(1, SECOND).await);
    wait_idle(&gw, SECOND).await;
    gw.shutdown().await;
}

/// A backend whose health check fails gets no traffic while another one is healthy.
#[tokio::test]
async fn unhealthy_backends_are_skipped() {
    let (fa, fb) = (FakeUpstream::openai().await.unwrap(), FakeUpstream::openai().await.unwrap());
    fa.on("/v1/models", fake::openai_error(500, "down"));
    let gw = TestGateway::start(&format!(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [backends.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"a\", \"b\"]\n",
        fa.url("/v1"),
        fb.url("/v1")
    ))
    .await;
    let t0 = Instant::now();
    loop {
        let ready: Value = gw.http.get(gw.url("/ready")).send().await.unwrap().json().await.unwrap();
        let backends = &ready["deployments"]["m"]["backends"];
        if backends["a"]["status"] == "unhealthy" && backends["b"]["status"] == "healthy" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "health checks did not run: {ready}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..4 {
        let res = gw.post_json(CHAT, &chat(json!({}))).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-ferrogate-backend"], "b");
    }
    assert!(fa.last_request(CHAT).is_none());
    gw.shutdown().await;
}

// === 8. keep-alive ===

#[tokio::test]
async fn idle_streams_get_keepalive_comments() {
    let f = FakeUpstream::openai().await.unwrap();
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    };
    // Two writes 2.5 s apart: the first event, then the rest of the stream.
    let first = chunk(json!({"role": "assistant", "content": "tick"}), Value::Null);
    let rest = [chunk(json!({"content": "tock"}), Value::Null), chunk(json!({}), json!("stop")), sse_done()].concat();
    let reply =
        StreamReply::new("text/event-stream", vec![first, Bytes::from(rest)]).delay(Duration::from_millis(2500));
    f.on(CHAT, reply);
    let gw = gateway(&f, "inter_token_timeout_ms = 10000", "sse_keepalive_secs = 1").await;
    let res = gw.post_json(CHAT, &stream_chat()).await;
    assert_eq!(res.status(), 200);
    let raw = body_text(res).await;
    let tick = raw.find("tick").expect("first delta");
    let tock = raw.find("tock").expect("second delta");
    let between = &raw[tick..tock];
    assert!(between.contains("\n: keep-alive\n\n"), "no keep-alive while the upstream was silent: {raw}");
    assert!(between.matches(": keep-alive").count() <= 3, "{raw}");
    let events = sse_data(&raw);
    assert_eq!(contents(&events), ["tick", "tock"]);
    assert_eq!(events.last().unwrap(), "[DONE]");
    gw.shutdown().await;
}
