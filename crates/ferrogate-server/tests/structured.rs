//! Structured output, tool calls and log probabilities through the gateway (issue 20 items 5
//! and 6), black-box over real HTTP with the real SmolLM2 engine: `response_format`
//! json_object / json_schema, a tool-call round trip (non-streamed and streamed deltas), the
//! Anthropic and Ollama fronts on the embedded engine, `logprobs` from the engine and passed
//! through an OpenAI-compatible upstream (a second gateway serving the engine), and clear
//! refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use futures::StreamExt;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 96,
        "temperature": 0,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn sse_json(res: reqwest::Response) -> Vec<Value> {
    assert_eq!(res.status(), 200);
    let mut dec = SseDecoder::new();
    let mut out = Vec::new();
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        for e in dec.push(&chunk.unwrap()) {
            if e.data != "[DONE]" {
                out.push(serde_json::from_str(&e.data).unwrap());
            }
        }
    }
    out
}

async fn ok_json(res: reqwest::Response) -> Value {
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}
    }}])
}

#[tokio::test]
async fn response_format_json_object_and_json_schema() {
    let gw = TestGateway::embedded(2, "").await;
    let rf = json!({"response_format": {"type": "json_object"}});
    let mut body = chat("Reply with a JSON object whose only key is \"name\", the name of a dog.", rf);
    body["max_tokens"] = json!(200);
    let v = ok_json(gw.post_json(CHAT, &body).await).await;
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let obj: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    assert!(obj.is_object());

    let schema = json!({"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer"},
        "genre": {"enum": ["drama", "comedy", "horror"]}
    }, "required": ["title", "year", "genre"], "additionalProperties": false});
    let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "film", "schema": schema, "strict": true}}});
    let v = ok_json(gw.post_json(CHAT, &chat("Name a film as JSON.", rf.clone())).await).await;
    let film: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(film["title"].is_string() && film["year"].is_i64(), "{film}");
    assert!(["drama", "comedy", "horror"].contains(&film["genre"].as_str().unwrap()), "{film}");
    assert_eq!(film.as_object().unwrap().len(), 3, "{film}");

    // Streamed: the concatenated deltas are the same JSON.
    let mut body = chat("Name a film as JSON.", rf);
    body["stream"] = json!(true);
    let chunks = sse_json(gw.post_json(CHAT, &body).await).await;
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), film);

    // What the grammar cannot enforce is refused, naming the keyword.
    let bad = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}}}});
    let res = gw.post_json(CHAT, &chat("x", bad)).await;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("pattern"), "{e}");
    let bad = json!({"response_format": {"type": "json_object"}, "tools": weather_tool()});
    assert_eq!(gw.post_json(CHAT, &chat("x", bad)).await.status(), 400);
    gw.shutdown().await;
}

#[tokio::test]
async fn tool_call_round_trip_whole_and_streamed() {
    let gw = TestGateway::embedded(2, "").await;
    let ask = "What is the weather in Paris?";
    let v = ok_json(gw.post_json(CHAT, &chat(ask, json!({"tools": weather_tool(), "tool_choice": "required"}))).await)
        .await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert!(choice["message"]["content"].is_null(), "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!((call["type"].as_str(), call["function"]["name"].as_str()), (Some("function"), Some("get_weather")));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");

    // Streamed: the first delta of the call has index, id, type and name; the argument
    // fragments join into the same arguments; the finish reason is tool_calls.
    let mut body = chat(ask, json!({"tools": weather_tool(), "tool_choice": "required", "stream": true}));
    body["stream_options"] = json!({"include_usage": true});
    let chunks = sse_json(gw.post_json(CHAT, &body).await).await;
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array()).flatten().collect();
    assert!(deltas.len() >= 2, "name first, then argument fragments: {deltas:?}");
    assert_eq!(deltas[0]["index"], 0);
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"), "{:?}", deltas[0]);
    assert_eq!(deltas[0]["type"], "function");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    let streamed: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert_eq!(serde_json::from_str::<Value>(&streamed).unwrap(), args, "greedy: the same call");
    let finish: Vec<&str> = chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).collect();
    assert_eq!(finish, ["tool_calls"]);
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // The round trip: the call and its result go back; the model answers in text.
    let turn = json!({"tools": weather_tool(), "tool_choice": "none", "messages": [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"},
    ]});
    let v = ok_json(gw.post_json(CHAT, &chat("", turn)).await).await;
    let answer = &v["choices"][0];
    assert!(answer["message"]["tool_calls"].is_null(), "{v}");
    assert!(!answer["message"]["content"].as_str().unwrap().is_empty(), "{v}");
    assert_ne!(answer["finish_reason"], "tool_calls");
    gw.shutdown().await;
}

#[tokio::test]
async fn anthropic_and_ollama_fronts_get_tools_and_json_from_the_engine() {
    let gw = TestGateway::embedded(2, "").await;
    let tools = json!([{"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}}]);
    let body = json!({"model": "smollm2", "max_tokens": 80, "temperature": 0, "tools": tools,
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}, "messages": [{"role": "user", "content": "Weather in Rome?"}]});
    let m = ok_json(gw.http.post(gw.url("/v1/messages")).json(&body).send().await.unwrap()).await;
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let block = m["content"].as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(block["name"], "get_weather");
    assert!(block["input"]["city"].is_string(), "{m}");

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let res = gw.http.post(gw.url("/v1/messages")).json(&streamed).send().await.unwrap();
    let events = sse_json(res).await;
    let partial: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta" && e["delta"]["type"] == "input_json_delta")
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), block["input"]);

    let schema = json!({"type": "object", "properties": {"colour": {"type": "string", "maxLength": 20}}, "required": ["colour"]});
    let body = json!({"model": "smollm2", "stream": false, "format": schema, "options": {"temperature": 0, "num_predict": 40},
        "messages": [{"role": "user", "content": "Name a colour."}]});
    let o = ok_json(gw.post_json("/api/chat", &body).await).await;
    let v: Value = serde_json::from_str(o["message"]["content"].as_str().unwrap()).unwrap();
    assert!(v["colour"].is_string(), "{o}");

    let body = json!({"model": "smollm2", "stream": false, "tools": weather_tool(), "options": {"temperature": 0, "num_predict": 60},
        "messages": [{"role": "user", "content": "What is the weather in Oslo? Use the function."}]});
    let o = ok_json(gw.post_json("/api/chat", &body).await).await;
    // tool_choice auto: a call (arguments as an object) or a text answer, never a broken envelope.
    match o["message"]["tool_calls"].as_array() {
        Some(calls) => assert!(calls[0]["function"]["arguments"].is_object(), "{o}"),
        None => assert!(!o["message"]["content"].as_str().unwrap().starts_with('{'), "{o}"),
    }
    gw.shutdown().await;
}

fn check_logprobs(entries: &[Value], top: usize) {
    assert!(!entries.is_empty());
    for e in entries {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0, "{e}");
        assert!(e["token"].is_string() && e["bytes"].is_array(), "{e}");
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), top, "{e}");
    }
}

#[tokio::test]
async fn logprobs_from_the_engine_and_through_an_openai_compatible_upstream() {
    let engine = TestGateway::embedded(2, "").await;
    let proxy = TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.smollm2]\nbackends = [\"up\"]\n",
        engine.url("/v1")
    ))
    .await;
    let ask = json!({"logprobs": true, "top_logprobs": 2, "max_tokens": 8});
    for gw in [&engine, &proxy] {
        let v = ok_json(gw.post_json(CHAT, &chat("Name a fruit.", ask.clone())).await).await;
        let entries = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
        check_logprobs(entries, 2);
        let text: String = entries.iter().filter_map(|e| e["token"].as_str()).collect();
        assert_eq!(text, v["choices"][0]["message"]["content"].as_str().unwrap());
        let completion = v["usage"]["completion_tokens"].as_u64().unwrap() as usize;
        assert!(entries.len() == completion || entries.len() + 1 == completion, "one per token but EOG: {v}");

        let mut body = chat("Name a fruit.", ask.clone());
        body["stream"] = json!(true);
        let chunks = sse_json(gw.post_json(CHAT, &body).await).await;
        let streamed: Vec<Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
            .flatten()
            .cloned()
            .collect();
        check_logprobs(&streamed, 2);
        assert_eq!(streamed.len(), entries.len(), "the same tokens streamed");
    }
    // Without logprobs the field stays null.
    let v = ok_json(proxy.post_json(CHAT, &chat("Hi", json!({"max_tokens": 3}))).await).await;
    assert!(v["choices"][0]["logprobs"].is_null());
    // Out of range, and legacy completions: refused.
    let res = engine.post_json(CHAT, &chat("Hi", json!({"logprobs": true, "top_logprobs": 50}))).await;
    assert_eq!(res.status(), 400);
    let res = engine.post_json("/v1/completions", &json!({"model": "smollm2", "prompt": "Hi", "logprobs": 2})).await;
    assert_eq!(res.status(), 400);
    proxy.shutdown().await;
    engine.shutdown().await;
}
