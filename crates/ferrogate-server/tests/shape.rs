//! Request shape limits (issue 17, item 4), black-box: oversized model names, stop sequences,
//! message lists, `logit_bias` and `metadata` get a 400 naming the field — with the client's
//! value clipped in the message — and never reach the upstream; fields beyond OpenAI's are
//! refused unless the deployment passes them through with `extra_body`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{FakeUpstream, chat_json};
use serde_json::{Map, Value, json};

const CHAT: &str = "/v1/chat/completions";

/// Deployment `m` (strict) and `vendor` (`extra_body = true`) over `fake`; at most 3 messages
/// of at most 64 bytes.
async fn gateway(fake: &FakeUpstream) -> TestGateway {
    TestGateway::start(&format!(
        "[server]\nmax_messages = 3\nmax_message_bytes = 64\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n\
         [deployments.vendor]\nbackends = [\"up\"]\nextra_body = true\n",
        fake.url("/v1")
    ))
    .await
}

fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(gw: &TestGateway, body: &Value) -> (u16, Value) {
    let res = reqwest::Client::new().post(gw.url(CHAT)).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// Asserts a 400 naming `param` whose message is short (client values clipped).
async fn refused(gw: &TestGateway, body: &Value, param: &str) {
    let (status, v) = post(gw, body).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some(param)), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.len() < 300, "the message quotes at most a clipped value: {msg}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[tokio::test]
async fn oversized_request_parts_are_refused_before_the_upstream() {
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake).await;
    let long_model = "m".repeat(10_000);
    refused(&gw, &chat(&long_model, json!({})), "model").await;
    refused(&gw, &chat("m", json!({"stop": ["a", "b", "c", "d", "e"]})), "stop").await;
    refused(&gw, &chat("m", json!({"stop": ["a", ""]})), "stop").await;
    refused(&gw, &chat("m", json!({"stop": "s".repeat(257)})), "stop").await;
    let four = json!({"messages": vec![json!({"role": "user", "content": "a"}); 4]});
    refused(&gw, &chat("m", four), "messages").await;
    let big = json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b".repeat(65)}]});
    refused(&gw, &chat("m", big), "messages[1]").await;
    let bias: Map<String, Value> = (0..301).map(|i| (i.to_string(), json!(1))).collect();
    refused(&gw, &chat("m", json!({"logit_bias": bias})), "logit_bias").await;
    let meta: Map<String, Value> = (0..17).map(|i| (i.to_string(), json!("v"))).collect();
    refused(&gw, &chat("m", json!({"metadata": meta})), "metadata").await;
    refused(&gw, &chat("m", json!({"guided_json": {"type": "object"}})), "guided_json").await;
    let long_field = "x".repeat(5000);
    refused(&gw, &chat("m", json!({ long_field: 1 })), &format!("{}…", "x".repeat(64))).await;

    // An unknown model is echoed clipped too (the name itself is within bounds).
    let (status, v) = post(&gw, &chat(&"n".repeat(256), json!({}))).await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().len() < 150, "{v}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let inference = fake.requests().iter().filter(|r| r.path == "/v1/chat/completions").count();
    assert_eq!(inference, 0, "nothing reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn documented_fields_pass_and_vendor_fields_need_extra_body() {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on("/v1/chat/completions", chat_json("ok", Some((5, 4))));
    let gw = gateway(&fake).await;
    let documented =
        json!({"response_format": {"type": "json_object"}, "metadata": {"k": "v"}, "stop": "s", "logprobs": false});
    assert_eq!(post(&gw, &chat("m", documented)).await.0, 200);
    let sent = fake.last_request("/v1/chat/completions").unwrap().json();
    assert_eq!(
        (sent["response_format"]["type"].as_str(), sent["metadata"]["k"].as_str()),
        (Some("json_object"), Some("v"))
    );

    let vendor = json!({"guided_json": {"type": "object"}});
    assert_eq!(post(&gw, &chat("m", vendor.clone())).await.0, 400, "strict deployment");
    assert_eq!(post(&gw, &chat("vendor", vendor)).await.0, 200, "extra_body passes it");
    assert_eq!(fake.last_request("/v1/chat/completions").unwrap().json()["guided_json"]["type"], "object");
    gw.shutdown().await;
}
