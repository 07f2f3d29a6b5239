//! Black-box tests: the real server on 127.0.0.1:0 with the real SmolLM2 model, over real HTTP.
//! They check the OpenAI wire format exactly, cancellation, readiness and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use futures::StreamExt;
use serde_json::{Value, json};

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 16,
        "temperature": 0,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// All SSE `data:` payloads of a response.
async fn sse_events(res: reqwest::Response) -> Vec<String> {
    let mut dec = SseDecoder::new();
    let mut out = Vec::new();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.extend(dec.push(&chunk.unwrap()).into_iter().map(|e| e.data));
    }
    out
}

#[tokio::test]
async fn chat_completion_non_streaming_has_openai_shape_and_exact_usage() {
    let gw = TestGateway::embedded(2, "").await;
    let res = gw.post_json("/v1/chat/completions", &chat("Say hello.", json!({}))).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.headers()["x-ferrogate-backend"], "smollm2");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], "smollm2");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(!choice["message"]["content"].as_str().unwrap().is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(u["completion_tokens"].as_u64().unwrap() <= 16);
    assert_eq!(u["total_tokens"], u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());
    gw.shutdown().await;
}

#[tokio::test]
async fn greedy_is_deterministic_and_max_tokens_exact() {
    let gw = TestGateway::embedded(2, "").await;
    let body = chat("Write a long story about a cat.", json!({"max_tokens": 7}));
    let a: Value = gw.post_json("/v1/chat/completions", &body).await.json().await.unwrap();
    let b: Value = gw.post_json("/v1/chat/completions", &body).await.json().await.unwrap();
    assert_eq!(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
    assert_eq!(a["usage"]["completion_tokens"], 7);
    assert_eq!(a["choices"][0]["finish_reason"], "length");
    gw.shutdown().await;
}

#[tokio::test]
async fn streaming_chunks_follow_openai_format() {
    let gw = TestGateway::embedded(2, "").await;
    let body = chat("Count from one to ten.", json!({"stream": true, "stream_options": {"include_usage": true}}));
    let res = gw.post_json("/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let events = sse_events(res).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "smollm2"));
    let id = &chunks[0]["id"];
    assert!(chunks.iter().all(|c| &c["id"] == id), "one id per stream");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "role delta first");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"].as_array().unwrap().len(), 0);
    let finish = &chunks[chunks.len() - 2];
    assert!(finish["choices"][0]["finish_reason"].is_string());
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let completion_tokens = usage_chunk["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens > 0 && completion_tokens <= 16);
    assert!(!text.is_empty());
    for c in &chunks[..chunks.len() - 1] {
        assert!(c.get("usage").is_some_and(Value::is_null), "usage: null on content chunks when requested");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn stream_equals_non_stream_text() {
    let gw = TestGateway::embedded(2, "").await;
    let whole: Value =
        gw.post_json("/v1/chat/completions", &chat("Name a fruit.", json!({}))).await.json().await.unwrap();
    let events =
        sse_events(gw.post_json("/v1/chat/completions", &chat("Name a fruit.", json!({"stream": true}))).await).await;
    let streamed: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(whole["choices"][0]["message"]["content"].as_str().unwrap(), streamed);
    gw.shutdown().await;
}

#[tokio::test]
async fn legacy_completions_generate_and_stream_endpoints() {
    let gw = TestGateway::embedded(2, "").await;
    let v: Value = gw
        .post_json(
            "/v1/completions",
            &json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].is_string());
    assert_eq!(v["usage"]["completion_tokens"], 5);

    let v: Value =
        gw.post_json("/generate", &json!({"prompt": "Say hi.", "max_tokens": 8})).await.json().await.unwrap();
    assert!(!v["text"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["model"], "smollm2", "default model");

    let events = sse_events(gw.post_json("/stream", &json!({"prompt": "Say hi.", "max_tokens": 8})).await).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert!(events.iter().any(|e| serde_json::from_str::<Value>(e).is_ok_and(|v| v["text"].is_string())));

    let s = gw
        .post_json("/v1/completions", &json!({"model": "smollm2", "prompt": "x", "stream": true, "max_tokens": 3}))
        .await;
    let events = sse_events(s).await;
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    gw.shutdown().await;
}

#[tokio::test]
async fn stop_sequence_is_honoured_and_not_emitted() {
    let gw = TestGateway::embedded(2, "").await;
    let body = chat("Count from 1 to 10, separated by commas.", json!({"max_tokens": 40, "stop": ["5"]}));
    let v: Value = gw.post_json("/v1/chat/completions", &body).await.json().await.unwrap();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.contains('5'), "{text}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{text}");
    gw.shutdown().await;
}

#[tokio::test]
async fn context_length_exceeded_is_400() {
    let gw = TestGateway::embedded(1, "").await;
    let long = "word ".repeat(3000);
    let res = gw.post_json("/v1/chat/completions", &chat(&long, json!({"max_tokens": 10}))).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    gw.shutdown().await;
}

/// Issue 17, item 6: a prompt whose bytes alone prove it longer than the context is refused
/// before the engine tokenizes it (the message counts bytes, not tokens), with the same 400; and
/// the gateway still serves the next request.
#[tokio::test]
async fn a_prompt_too_long_by_its_bytes_is_refused_before_tokenizing() {
    let gw = TestGateway::embedded(1, "").await;
    let huge = "word ".repeat(200_000);
    let started = std::time::Instant::now();
    let res = gw.post_json("/v1/chat/completions", &chat(&huge, json!({"max_tokens": 10}))).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("bytes"), "refused from its length: {v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    let res = gw.post_json("/v1/chat/completions", &chat("Hi", json!({"max_tokens": 2}))).await;
    assert_eq!(res.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn unsupported_options_are_refused_not_ignored() {
    let gw = TestGateway::embedded(1, "").await;
    let res = gw.post_json("/v1/chat/completions", &chat("hi", json!({"response_format": {"type": "regex"}}))).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "response_format");
    let tools = json!([{"type": "function", "function": {"name": "f g", "parameters": {}}}]);
    let res = gw.post_json("/v1/chat/completions", &chat("hi", json!({"tools": tools}))).await;
    assert_eq!(res.status(), 400);
    let res = gw.post_json("/v1/chat/completions", &chat("hi", json!({"logit_bias": {"1": 5}}))).await;
    assert_eq!(res.status(), 400);
    gw.shutdown().await;
}

/// With one slot, a disconnected stream must free it: a second request then starts promptly.
#[tokio::test]
async fn client_disconnect_cancels_the_stream_and_frees_the_slot() {
    let gw = TestGateway::embedded(1, "").await;
    let body = chat("Write a very long essay about the history of Rome.", json!({"stream": true, "max_tokens": 900}));
    let res = gw.post_json("/v1/chat/completions", &body).await;
    let mut stream = res.bytes_stream();
    let _ = stream.next().await.unwrap().unwrap();
    drop(stream);
    let t0 = Instant::now();
    loop {
        let busy = gw.state().inflight();
        if busy == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "request still in flight 1 s after the disconnect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let res = gw.post_json("/v1/chat/completions", &chat("Say hi.", json!({"max_tokens": 4}))).await;
    assert_eq!(res.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_cancels_a_non_streaming_request() {
    // Also the exit race: the test process ends right after the shutdown, and the cancelled
    // generation's engine step may still be running then — shutdown waits for the engine
    // (`lifecycle::engines_idle`), or a quarter of the runs died with SIGSEGV at exit.
    let gw = TestGateway::embedded(1, "").await;
    let body = chat("Write a very long essay about the history of Rome.", json!({"max_tokens": 900}));
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let err = client.post(gw.url("/v1/chat/completions")).json(&body).send().await;
    assert!(err.is_err(), "the client gave up");
    let t0 = Instant::now();
    while gw.state().inflight() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(1), "request still in flight 1 s after the disconnect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_and_refuses_new_work() {
    let gw = TestGateway::embedded(2, "[server]\nshutdown_grace_secs = 20\n").await;
    let body = chat("Tell me about the sea.", json!({"stream": true, "max_tokens": 48}));
    let res = gw.post_json("/v1/chat/completions", &body).await;
    assert_eq!(res.status(), 200);
    let reader = tokio::spawn(sse_events(res));
    let url = gw.url("/v1/chat/completions");
    let ready_url = gw.url("/ready");
    let state = gw.state().clone();
    let shutdown = tokio::spawn(gw.shutdown());
    while !state.is_draining() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = reqwest::Client::new();
    let r = client.post(&url).json(&chat("hi", json!({}))).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "shutting_down");
    assert_eq!(client.get(&ready_url).send().await.unwrap().status(), 503);
    let events = reader.await.unwrap();
    assert_eq!(events.last().unwrap(), "[DONE]", "the in-flight stream finished normally");
    tokio::time::timeout(Duration::from_secs(20), shutdown).await.unwrap().unwrap();
}
