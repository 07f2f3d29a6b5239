//! Anthropic's Messages API through the gateway: the real server on 127.0.0.1:0, testkit's
//! OpenAI-shaped fake upstream, real HTTP. Clients speak Anthropic; the upstream sees OpenAI chat
//! requests; answers, streams (exact event order), stop reasons, usage, tool calls and errors
//! come back in Anthropic's shape.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{
    DEFAULT_PIECES, DEFAULT_USAGE, FakeCall, FakeUpstream, Reply, chat_sse, tool_calls_json, tool_calls_sse,
};
use serde_json::{Value, json};

const MESSAGES: &str = "/v1/messages";
const CHAT: &str = "/v1/chat/completions";

async fn gateway(f: &FakeUpstream, extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n{extra}\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n",
        f.url("/v1")
    ))
    .await
}

fn messages(extra: Value) -> Value {
    let mut body = json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    gw.http
        .post(gw.url(MESSAGES))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "sk-test-12345678")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `(event name, data)` of every event of a stream.
async fn events(res: reqwest::Response) -> Vec<(String, Value)> {
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let raw = tokio::time::timeout(Duration::from_secs(10), res.text()).await.expect("stream ends").unwrap();
    let mut dec = SseDecoder::new();
    let mut out = dec.push(raw.as_bytes());
    out.extend(dec.finish());
    out.into_iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            let name = e.event.expect("every Anthropic event is named");
            assert_eq!(data["type"], name.as_str(), "event name and data type agree");
            (name, data)
        })
        .collect()
}

fn names(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn whole_message_has_anthropic_shape_usage_and_stop_reason() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let body = messages(json!({"system": "be brief", "temperature": 0.5, "stop_sequences": ["END"]}));
    let res = post(&gw, &body).await;
    assert_eq!(res.status(), 200);
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "m");
    assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
    assert_eq!(m["content"], json!([{"type": "text", "text": "Hello, world!"}]));
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], DEFAULT_USAGE.0);
    assert_eq!(m["usage"]["output_tokens"], DEFAULT_USAGE.1);
    // The upstream got the OpenAI translation.
    let up = f.last_request(CHAT).unwrap().json();
    assert_eq!(up["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(up["messages"][1]["role"], "user");
    assert_eq!(up["max_tokens"], 64);
    assert_eq!(up["temperature"], 0.5);
    assert_eq!(up["stop"], json!(["END"]));
}

#[tokio::test]
async fn length_maps_to_max_tokens() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(
        CHAT,
        Reply::json(
            200,
            &json!({"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "fake-model",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut"}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
        ),
    );
    let gw = gateway(&f, "").await;
    let m: Value = post(&gw, &messages(json!({}))).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "max_tokens", "{m}");
}

#[tokio::test]
async fn stream_has_the_exact_event_sequence() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let evs = events(post(&gw, &messages(json!({"stream": true}))).await).await;
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(DEFAULT_PIECES.iter().map(|_| "content_block_delta"));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names(&evs), expected);
    let start = &evs[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    assert_eq!(evs[2].1["content_block"], json!({"type": "text", "text": ""}));
    let text: String = evs[3..3 + DEFAULT_PIECES.len()]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, DEFAULT_PIECES.concat());
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], DEFAULT_USAGE.1);
    assert_eq!(delta["usage"]["input_tokens"], DEFAULT_USAGE.0);
    // The upstream was asked to stream with usage.
    let up = f.last_request(CHAT).unwrap().json();
    assert_eq!(up["stream"], true);
    assert_eq!(up["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn tool_use_round_trip_whole() {
    let f = FakeUpstream::openai().await.unwrap();
    let call = FakeCall { id: "call_abc", name: "get_weather", fragments: &["{\"city\":", "\"Paris\"}"] };
    f.push(CHAT, tool_calls_json(&[call], (20, 7)));
    let gw = gateway(&f, "").await;
    let tools = json!([{"name": "get_weather", "description": "Weather",
                        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let body = messages(json!({"tools": tools, "tool_choice": {"type": "auto"}}));
    let m: Value = post(&gw, &body).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    assert_eq!(
        m["content"],
        json!([{"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}])
    );
    let up = f.last_request(CHAT).unwrap().json();
    assert_eq!(up["tools"][0]["type"], "function");
    assert_eq!(up["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(up["tool_choice"], "auto");

    // The client sends the result back: the upstream gets the assistant's call and a `tool` message.
    let turn = json!({"tools": tools, "messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": m["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc", "content": "18C, sunny"}]},
    ]});
    let res = post(&gw, &messages(turn)).await;
    assert_eq!(res.status(), 200);
    let up = f.last_request(CHAT).unwrap().json();
    let msgs = up["messages"].as_array().unwrap();
    let assistant = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"][0]["id"], "call_abc");
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(assistant["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let tool = msgs.iter().find(|m| m["role"] == "tool").expect("a tool message upstream");
    assert_eq!(tool["tool_call_id"], "call_abc");
    assert!(tool["content"].to_string().contains("18C, sunny"), "{tool}");
}

#[tokio::test]
async fn streamed_tool_calls_become_tool_use_blocks_with_input_json_deltas() {
    let f = FakeUpstream::openai().await.unwrap();
    let a = FakeCall { id: "call_1", name: "lookup", fragments: &["{\"q\":", "\"rust", "\"}"] };
    let b = FakeCall { id: "call_2", name: "time", fragments: &["{}"] };
    f.push(CHAT, tool_calls_sse(&["Let me check."], &[a, b], (11, 9)));
    let gw = gateway(&f, "").await;
    let tools = json!([{"name": "lookup", "input_schema": {"type": "object"}}, {"name": "time", "input_schema": {"type": "object"}}]);
    let evs = events(post(&gw, &messages(json!({"stream": true, "tools": tools}))).await).await;
    assert_eq!(
        names(&evs),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[5].1["index"], 1);
    assert_eq!(evs[5].1["content_block"], json!({"type": "tool_use", "id": "call_1", "name": "lookup", "input": {}}));
    let joined: String = evs[6..9]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            assert_eq!(d["index"], 1);
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(joined, "{\"q\":\"rust\"}");
    assert_eq!(evs[10].1["content_block"]["id"], "call_2");
    assert_eq!(evs[13].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs[13].1["usage"]["output_tokens"], 9);
}

#[tokio::test]
async fn a_failure_after_the_first_byte_ends_with_an_error_event() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&DEFAULT_PIECES, Some(DEFAULT_USAGE)).die_after(3));
    let gw = gateway(&f, "").await;
    let evs = events(post(&gw, &messages(json!({"stream": true}))).await).await;
    assert_eq!(evs[0].0, "message_start");
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "error", "{evs:?}");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!names(&evs).contains(&"message_stop"));
}

async fn error_of(res: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn errors_take_anthropic_shape() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "[server]\napi_keys = [\"sk-test-12345678\"]\n").await;
    // 400: no max_tokens (Anthropic requires it).
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let e = error_of(post(&gw, &body).await, 400, "invalid_request_error").await;
    assert!(e["error"]["message"].as_str().unwrap().contains("max_tokens"), "{e}");
    // 400: not JSON.
    let res =
        gw.http.post(gw.url(MESSAGES)).header("x-api-key", "sk-test-12345678").body("{nope").send().await.unwrap();
    error_of(res, 400, "invalid_request_error").await;
    // 404: an unknown model.
    let e = error_of(post(&gw, &messages(json!({"model": "nope"}))).await, 404, "not_found_error").await;
    assert!(e["request_id"].is_string());
    // 401: no key (before any handler), and a wrong one.
    let res =
        gw.http.post(gw.url(MESSAGES)).header("anthropic-version", "2023-06-01").json(&messages(json!({}))).send();
    error_of(res.await.unwrap(), 401, "authentication_error").await;
    let res = gw.http.post(gw.url(MESSAGES)).header("x-api-key", "sk-wrong-0000000").json(&messages(json!({})));
    error_of(res.send().await.unwrap(), 401, "authentication_error").await;
    // The same routes in OpenAI's shape elsewhere.
    let res = gw.http.post(gw.url(CHAT)).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body.get("type").is_none());
    // An upstream 4xx/5xx before the first byte.
    f.push(CHAT, ferrogate_testkit::upstream::openai_error(500, "boom"));
    error_of(post(&gw, &messages(json!({}))).await, 502, "api_error").await;
}

#[tokio::test]
async fn a_rate_limit_answers_429_rate_limit_error_with_retry_after() {
    let f = FakeUpstream::openai().await.unwrap();
    let rule = "[[limits.rules]]\nname = \"one\"\nscope = \"global\"\nrequests_per_minute = 1\n";
    let gw = gateway(&f, rule).await;
    assert_eq!(post(&gw, &messages(json!({}))).await.status(), 200);
    let res = post(&gw, &messages(json!({}))).await;
    assert!(res.headers().contains_key("retry-after"));
    error_of(res, 429, "rate_limit_error").await;
}

#[tokio::test]
async fn count_tokens_counts_the_prompt_of_a_known_model() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "").await;
    let url = gw.url("/v1/messages/count_tokens");
    let short = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let long = json!({"model": "m", "system": "You are a careful assistant who answers in full sentences.",
                      "messages": [{"role": "user", "content": "Tell me everything about the history of Paris, please."}]});
    let n = |v: Value| v["input_tokens"].as_u64().unwrap();
    let a = n(gw.http.post(&url).json(&short).send().await.unwrap().json().await.unwrap());
    let b = n(gw.http.post(&url).json(&long).send().await.unwrap().json().await.unwrap());
    assert!(a > 0 && b > a, "{a} {b}");
    let res = gw.http.post(&url).json(&json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}));
    error_of(res.send().await.unwrap(), 404, "not_found_error").await;
    assert!(f.requests().iter().all(|r| r.path != CHAT), "counting calls no backend");
}

#[tokio::test]
async fn idle_streams_get_ping_events() {
    use ferrogate_testkit::upstream::{StreamReply, sse, sse_done};
    let f = FakeUpstream::openai().await.unwrap();
    let chunk = |delta: Value, finish: Value| {
        sse(&json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
    };
    // Two writes 2.5 s apart: the first event, then the rest of the stream.
    let first = chunk(json!({"role": "assistant", "content": "tick"}), Value::Null);
    let rest = [chunk(json!({"content": "tock"}), Value::Null), chunk(json!({}), json!("stop")), sse_done()].concat();
    let reply =
        StreamReply::new("text/event-stream", vec![first, bytes::Bytes::from(rest)]).delay(Duration::from_millis(2500));
    f.on(CHAT, reply);
    let gw = TestGateway::start(&format!(
        "[server]\nsse_keepalive_secs = 1\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         inter_token_timeout_ms = 10000\n[deployments.m]\nbackends = [\"up\"]\n",
        f.url("/v1")
    ))
    .await;
    let evs = events(post(&gw, &messages(json!({"stream": true}))).await).await;
    let n = names(&evs);
    let tick = evs.iter().position(|(_, d)| d["delta"]["text"] == "tick").unwrap();
    let tock = evs.iter().position(|(_, d)| d["delta"]["text"] == "tock").unwrap();
    let pings = n[tick..tock].iter().filter(|e| **e == "ping").count();
    assert!((1..=3).contains(&pings), "a ping while the upstream was silent: {n:?}");
    assert_eq!(n.last(), Some(&"message_stop"));
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream() {
    use futures::StreamExt;
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, chat_sse(&DEFAULT_PIECES, Some(DEFAULT_USAGE)).stall_after(3));
    let gw = gateway(&f, "").await;
    let res = post(&gw, &messages(json!({"stream": true}))).await;
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        seen.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    drop(body);
    assert!(f.wait_for_disconnects(1, Duration::from_secs(5)).await, "the upstream stream was cancelled");
}

#[tokio::test]
async fn tool_calls_from_an_ollama_backend_become_tool_use_blocks() {
    use ferrogate_testkit::ollama as fake;
    let f = FakeUpstream::ollama().await.unwrap();
    f.push("/api/chat", fake::tool_call("get_weather", &json!({"city": "Lima"})));
    let gw = TestGateway::start(&format!(
        "[backends.ol]\nkind = \"ollama\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"ol\"]\nupstream_model = \"{}\"\n",
        f.url(""),
        fake::DEFAULT_MODEL
    ))
    .await;
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let m: Value = post(&gw, &messages(json!({"tools": tools}))).await.json().await.unwrap();
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let block = &m["content"][0];
    assert_eq!((block["type"].as_str(), block["name"].as_str()), (Some("tool_use"), Some("get_weather")));
    assert_eq!(block["input"], json!({"city": "Lima"}));
    assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()), "{block}");
    // The Ollama upstream got the tools in its own (OpenAI function) shape.
    let up = f.last_request("/api/chat").unwrap().json();
    assert_eq!(up["tools"][0]["function"]["name"], "get_weather");
}

#[tokio::test]
async fn a_body_over_the_limit_is_request_too_large() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&f, "[server]\nbody_limit_bytes = 4096\n").await;
    let big = messages(json!({"system": "x".repeat(8192)}));
    error_of(post(&gw, &big).await, 413, "request_too_large").await;
    // The same limit on Ollama's routes, in Ollama's shape.
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(8192)}]});
    let res = gw.post_json("/api/chat", &big).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("4096"), "{body}");
}
