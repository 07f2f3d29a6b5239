//! The gateway over the native Ollama adapter: the real server on 127.0.0.1:0, a fake Ollama
//! upstream, real HTTP. Clients speak OpenAI; the upstream sees `/api/chat` and `/api/generate`
//! (NDJSON), and its counts (`prompt_eval_count`, `eval_count`) become OpenAI usage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::ollama::{self as fake, DEFAULT_MODEL, Kind};
use ferrogate_testkit::upstream::{DEFAULT_PIECES, DEFAULT_TEXT, DEFAULT_USAGE, FakeUpstream};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

/// A gateway whose deployment `m` is `DEFAULT_MODEL` on the fake Ollama, plus `backend_extra`.
/// Retries and the breaker are off: each upstream failure is mapped as it comes.
async fn gateway(f: &FakeUpstream, backend_extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 0\nfailure_rate = 0.0\n\
         [backends.ol]\nkind = \"ollama\"\nbase_url = \"{}\"\n{backend_extra}\n\
         [deployments.m]\nbackends = [\"ol\"]\nupstream_model = \"{DEFAULT_MODEL}\"\n",
        f.url("")
    ))
    .await
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn sse_data(res: reqwest::Response) -> Vec<String> {
    let raw = tokio::time::timeout(Duration::from_secs(5), res.text()).await.expect("stream ends").unwrap();
    let mut dec = SseDecoder::new();
    let mut out: Vec<String> = dec.push(raw.as_bytes()).into_iter().map(|e| e.data).collect();
    out.extend(dec.finish().map(|e| e.data));
    out
}

fn chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

fn contents(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn expected_usage() -> Value {
    let (p, c) = DEFAULT_USAGE;
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

fn usage_counts(u: &Value) -> Value {
    json!({"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"], "total_tokens": u["total_tokens"]})
}

#[tokio::test]
async fn non_streaming_chat_is_openai_shaped_with_ollama_counts() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, "keep_alive = \"30m\"").await;
    let res = gw.post_json(CHAT, &chat(json!({"temperature": 0.2, "stop": ["\n\n"]}))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-ferrogate-backend"], "ol");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_TEXT);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_counts(&v["usage"]), expected_usage(), "{v}");

    let up = f.last_request("/api/chat").unwrap();
    let body = up.json();
    assert_eq!(body["model"], DEFAULT_MODEL);
    assert_eq!(body["stream"], false);
    assert_eq!(body["keep_alive"], "30m");
    assert_eq!(body["messages"][0], json!({"role": "user", "content": "hi"}));
    let opts = &body["options"];
    assert_eq!(opts["num_predict"], 9);
    assert_eq!(opts["stop"], json!(["\n\n"]));
    assert!((opts["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6, "{opts}");
    assert!(opts.get("num_ctx").is_none(), "load-time options would make Ollama reload the model: {opts}");
    assert!(up.header("x-request-id").is_some_and(|id| !id.is_empty()), "request id propagated");
    gw.shutdown().await;
}

#[tokio::test]
async fn streaming_chat_becomes_openai_chunks_with_usage() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, "").await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let res = gw.post_json(CHAT, &body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let chunks = chunks(&sse_data(res).await);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["model"] == "m"), "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "role delta first");
    assert_eq!(contents(&chunks), DEFAULT_PIECES);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop", "{finish}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(usage_counts(&last["usage"]), expected_usage(), "{last}");
    assert_eq!(f.last_request("/api/chat").unwrap().json()["stream"], true);
    gw.shutdown().await;
}

/// Ollama's API has no log probabilities: asked for, they are refused before the upstream.
#[tokio::test]
async fn logprobs_are_refused_for_an_ollama_backend() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, "").await;
    let res = gw.post_json(CHAT, &chat(json!({"logprobs": true}))).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "logprobs", "{v}");
    assert!(f.requests().iter().all(|r| r.path != "/api/chat"), "nothing reached Ollama");
    gw.shutdown().await;
}

#[tokio::test]
async fn done_reason_length_is_finish_reason_length() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.on("/api/chat", fake::ndjson(Kind::Chat, &["a", "b"], "length", Some((3, 2))));
    let gw = gateway(&f, "").await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let chunks = chunks(&sse_data(gw.post_json(CHAT, &body).await).await);
    assert_eq!(contents(&chunks), ["a", "b"]);
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn ollama_error_line_mid_stream_is_an_error_event_then_done() {
    let f = FakeUpstream::ollama().await.unwrap();
    f.on("/api/chat", fake::ndjson_error_after(Kind::Chat, &DEFAULT_PIECES, 2, "CUDA out of memory on 10.0.0.9"));
    let gw = gateway(&f, "").await;
    let res = gw.post_json(CHAT, &chat(json!({"stream": true}))).await;
    assert_eq!(res.status(), 200);
    let events = sse_data(res).await;
    assert_eq!(events.last().unwrap(), "[DONE]", "{events:?}");
    let parsed: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let (err, content) = parsed.split_last().unwrap();
    assert_eq!(contents(content), ["Hello", ","]);
    assert!(content.iter().all(|c| c["choices"][0]["finish_reason"].is_null()), "not a clean end: {events:?}");
    let e = &err["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty() && !m.contains("10.0.0.9")), "{err}");
    assert!(e["type"].is_string() && e.get("param").is_some() && e.get("code").is_some(), "{err}");
    gw.shutdown().await;
}

#[tokio::test]
async fn ollama_http_errors_get_gateway_statuses() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, "").await;
    f.push("/api/chat", fake::error(500, "llama runner process has terminated"));
    let res = gw.post_json(CHAT, &chat(json!({}))).await;
    assert_eq!(res.status(), 502);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "backend_error");
    f.push("/api/chat", fake::error(404, &format!("model '{DEFAULT_MODEL}' not found, try pulling it first")));
    let res = gw.post_json(CHAT, &chat(json!({"stream": true}))).await;
    assert_eq!(res.status(), 502, "a misconfigured upstream model is the gateway's problem, not the caller's");
    gw.shutdown().await;
}

#[tokio::test]
async fn legacy_completions_are_raw_generate() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, "").await;
    let body = json!({"model": "m", "prompt": "The sky is", "max_tokens": 4});
    let res = gw.post_json("/v1/completions", &body).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["text"], DEFAULT_TEXT);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_counts(&v["usage"]), expected_usage(), "{v}");
    let up = f.last_request("/api/generate").unwrap().json();
    assert_eq!(up["prompt"], "The sky is", "the prompt is sent untemplated");
    assert_eq!(up["raw"], true);
    assert_eq!(up["stream"], false);
    assert_eq!(up["model"], DEFAULT_MODEL);
    assert!(f.last_request("/api/chat").is_none());

    let body = json!({"model": "m", "prompt": "The sky is", "stream": true, "stream_options": {"include_usage": true}});
    let events = sse_data(gw.post_json("/v1/completions", &body).await).await;
    let chunks = chunks(&events);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"), "{chunks:?}");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, DEFAULT_TEXT);
    assert_eq!(usage_counts(&chunks.last().unwrap()["usage"]), expected_usage());
    assert_eq!(f.last_request("/api/generate").unwrap().json()["stream"], true);
    gw.shutdown().await;
}

/// With `require_loaded`, `/ready` waits until `/api/ps` lists the model.
#[tokio::test]
async fn readiness_follows_api_ps_when_the_model_must_be_loaded() {
    let f = FakeUpstream::ollama().await.unwrap();
    let gw = gateway(&f, &format!("models = [\"{DEFAULT_MODEL}\"]\nrequire_loaded = true")).await;
    let ready = || async { gw.http.get(gw.url("/ready")).send().await.unwrap() };
    let t0 = Instant::now();
    loop {
        // Wait for the first health check to have run (reasons change from "not checked yet").
        let res = ready().await;
        assert_eq!(res.status(), 503, "nothing is loaded yet");
        let v: Value = res.json().await.unwrap();
        if v.to_string().contains("not loaded") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "no health check result: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.on("/api/ps", fake::ps(&[DEFAULT_MODEL]));
    gw.wait_ready(Duration::from_secs(3)).await;
    gw.shutdown().await;
}
