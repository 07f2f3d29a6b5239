//! The Ollama API served to Ollama clients, through the gateway: the real server on
//! 127.0.0.1:0 over testkit's OpenAI-shaped fake upstream, real HTTP. `/api/chat` and
//! `/api/generate` stream NDJSON by default and answer whole with `stream: false`; tool calls,
//! the model routes and errors in Ollama's `{"error": "…"}` shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{
    DEFAULT_PIECES, DEFAULT_TEXT, DEFAULT_USAGE, FakeCall, FakeUpstream, chat_sse, tool_calls_json, tool_calls_sse,
};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

async fn gateway(f: &FakeUpstream, extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n{extra}\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\naliases = [\"m:latest\"]\n",
        f.url("/v1")
    ))
    .await
}

async fn lines(res: reqwest::Response) -> Vec<Value> {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let raw = tokio::time::timeout(Duration::from_secs(10), res.text()).await.expect("stream ends").unwrap();
    assert!(raw.ends_with('\n'), "{raw:?}");
    raw.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                          "options": {"num_predict": 32, "temperature": 0.2, "top_k": 5, "seed": 7, "num_ctx": 4096},
                          "keep_alive": "5m"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn chat_streams_ndjson_by_default() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let ls = lines(gw.post_json("/api/chat", &chat(json!({}))).await).await;
    assert_eq!(ls.len(), DEFAULT_PIECES.len() + 1, "{ls:?}");
    for (l, piece) in ls.iter().zip(DEFAULT_PIECES) {
        assert_eq!(l["model"], "m");
        assert_eq!(l["done"], false);
        assert_eq!(l["message"], json!({"role": "assistant", "content": piece}));
        assert!(l["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let last = ls.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["prompt_eval_count"], DEFAULT_USAGE.0);
    assert_eq!(last["eval_count"], DEFAULT_USAGE.1);
    assert!(last["total_duration"].as_u64().unwrap() > 0);
    // Ollama's options reached the upstream as OpenAI's; num_ctx (a load-time option) did not.
    let up = f.last_request(CHAT).unwrap().json();
    assert_eq!(up["max_tokens"], 32);
    assert_eq!(up["temperature"], 0.2);
    assert_eq!(up["seed"], 7);
    assert_eq!(up["stream"], true);
    assert!(up.get("num_ctx").is_none());
}

#[tokio::test]
async fn chat_and_generate_answer_whole_with_stream_false() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let res = gw.post_json("/api/chat", &chat(json!({"stream": false}))).await;
    assert_eq!(res.status(), 200);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["message"], json!({"role": "assistant", "content": DEFAULT_TEXT}));
    assert_eq!((c["done"].clone(), c["done_reason"].clone()), (json!(true), json!("stop")));
    assert_eq!(c["prompt_eval_count"], DEFAULT_USAGE.0);
    assert_eq!(c["eval_count"], DEFAULT_USAGE.1);

    let g = json!({"model": "m", "prompt": "hi", "system": "terse", "stream": false});
    let res = gw.post_json("/api/generate", &g).await;
    let g: Value = res.json().await.unwrap();
    assert_eq!(g["response"], DEFAULT_TEXT, "{g}");
    assert_eq!(g["done"], true);
    assert_eq!(g["eval_count"], DEFAULT_USAGE.1);
    let up = f.last_request(CHAT).unwrap().json();
    assert_eq!(up["messages"][0], json!({"role": "system", "content": "terse"}));
}

#[tokio::test]
async fn generate_streams_and_raw_runs_as_a_completion() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let ls = lines(gw.post_json("/api/generate", &json!({"model": "m", "prompt": "hi"})).await).await;
    let text: String = ls.iter().map(|l| l["response"].as_str().unwrap()).collect();
    assert_eq!(text, DEFAULT_TEXT);
    assert_eq!(ls.last().unwrap()["done"], true);
    let raw = json!({"model": "m", "prompt": "Once upon", "raw": true, "stream": false});
    let g: Value = gw.post_json("/api/generate", &raw).await.json().await.unwrap();
    assert_eq!(g["response"], DEFAULT_TEXT);
    assert_eq!(f.last_request("/v1/completions").unwrap().json()["prompt"], "Once upon");
}

#[tokio::test]
async fn tool_calls_come_back_as_objects_whole_and_streamed() {
    let f = FakeUpstream::openai().await.unwrap();
    let call = FakeCall { id: "call_9", name: "get_weather", fragments: &["{\"city\":", "\"Oslo\"}"] };
    f.push(CHAT, tool_calls_json(&[call], (12, 6)));
    f.push(CHAT, tool_calls_sse(&[], &[call], (12, 6)));
    let gw = gateway(&f, "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let c: Value =
        gw.post_json("/api/chat", &chat(json!({"stream": false, "tools": tools}))).await.json().await.unwrap();
    let expected = json!({"name": "get_weather", "arguments": {"city": "Oslo"}});
    assert_eq!(c["message"]["tool_calls"][0]["function"]["name"], expected["name"], "{c}");
    assert_eq!(c["message"]["tool_calls"][0]["function"]["arguments"], expected["arguments"]);
    assert_eq!(f.last_request(CHAT).unwrap().json()["tools"][0]["function"]["name"], "get_weather");

    let ls = lines(gw.post_json("/api/chat", &chat(json!({"tools": tools}))).await).await;
    let with_calls: Vec<&Value> = ls.iter().filter(|l| l["message"]["tool_calls"].is_array()).collect();
    assert_eq!(with_calls.len(), 1, "{ls:?}");
    assert_eq!(with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"], expected["arguments"]);
    assert_eq!(ls.last().unwrap()["done"], true);

    // The result goes back as a `tool` message.
    let turn = json!({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": expected}]},
        {"role": "tool", "content": "-3C", "tool_name": "get_weather"},
    ], "stream": false});
    assert_eq!(gw.post_json("/api/chat", &chat(turn)).await.status(), 200);
    let up = f.last_request(CHAT).unwrap().json();
    let msgs = up["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "get_weather");
    let tool = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["content"], "-3C");
}

#[tokio::test]
async fn model_routes() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let tags: Value = gw.http.get(gw.url("/api/tags")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = tags["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["m", "m:latest"]);
    assert_eq!(tags["models"][0]["model"], "m");
    let ps: Value = gw.http.get(gw.url("/api/ps")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ps["models"][0]["name"], "m");
    assert!(ps["models"][0]["expires_at"].as_str().unwrap().ends_with('Z'));
    let v: Value = gw.http.get(gw.url("/api/version")).send().await.unwrap().json().await.unwrap();
    assert!(v["version"].as_str().unwrap().split('.').count() == 3);
    let show: Value = gw.post_json("/api/show", &json!({"model": "m:latest"})).await.json().await.unwrap();
    assert!(show["capabilities"].as_array().unwrap().contains(&json!("completion")), "{show}");
    // A load request answers at once, without a backend call.
    let before = f.requests().iter().filter(|r| r.path == CHAT).count();
    let load: Value = gw.post_json("/api/chat", &json!({"model": "m", "keep_alive": 0})).await.json().await.unwrap();
    assert_eq!(load["done_reason"], "unload");
    assert_eq!(f.requests().iter().filter(|r| r.path == CHAT).count(), before);
}

async fn error_of(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 1, "only `error`: {body}");
    body["error"].as_str().expect("a string error").to_owned()
}

#[tokio::test]
async fn errors_take_ollama_shape() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let e = error_of(gw.post_json("/api/chat", &chat(json!({"model": "nope"}))).await, 404).await;
    assert!(e.contains("nope"), "{e}");
    error_of(gw.post_json("/api/show", &json!({"model": "nope"})).await, 404).await;
    error_of(gw.post_json("/api/chat", &json!({"messages": []})).await, 400).await;
    // Embeddings are served (tests/embeddings.rs); a bad one is refused in Ollama's shape.
    let e = error_of(gw.post_json("/api/embed", &json!({"model": "m", "input": ""})).await, 400).await;
    assert!(e.contains("empty"), "{e}");
    error_of(gw.http.get(gw.url("/api/nothing")).send().await.unwrap(), 404).await;
    // After the first byte: an error line ends the stream.
    f.on(CHAT, chat_sse(&DEFAULT_PIECES, Some(DEFAULT_USAGE)).die_after(3));
    let ls = lines(gw.post_json("/api/chat", &chat(json!({}))).await).await;
    assert!(ls.last().unwrap()["error"].is_string(), "{ls:?}");
    assert!(ls.iter().all(|l| l["done"] != true));
}

#[tokio::test]
async fn missing_key_is_401_in_ollama_shape() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "[server]\napi_keys = [\"sk-test-12345678\"]\n").await;
    error_of(gw.http.get(gw.url("/api/tags")).send().await.unwrap(), 401).await;
    let ok = gw.http.get(gw.url("/api/tags")).bearer_auth("sk-test-12345678").send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
