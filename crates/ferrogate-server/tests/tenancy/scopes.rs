//! Scopes (models, endpoint groups) and per-request caps.

use ferrogate_testkit::TestDatabase;
use serde_json::{Value, json};

use crate::env::{Env, assert_error, chat, status_json};

pub async fn model_and_endpoint_scopes(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (_, only_m) = env.key("acme", json!({"scopes": {"models": ["m"]}})).await;
    let v = assert_error(env.chat(&only_m, &chat("other", 4)).await, 403, "model_not_allowed").await;
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(env.chat(&only_m, &chat("m", 4)).await.status(), 200);
    assert_eq!(env.chat(&only_m, &chat("mm", 4)).await.status(), 200, "an alias of an allowed model");
    assert_error(env.chat(&only_m, &chat("nope", 4)).await, 404, "model_not_found").await;
    let models: Value = env.get(&only_m, "/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m", "mm"]);
    assert_error(env.get(&only_m, "/v1/models/other").await, 403, "model_not_allowed").await;

    // Endpoint groups: the default is inference (and batch) without usage-read.
    let (_, reader) = env.key("acme", json!({"scopes": {"endpoints": ["usage-read"]}})).await;
    assert_error(env.chat(&reader, &chat("m", 4)).await, 403, "endpoint_not_allowed").await;
    assert_error(env.get(&reader, "/v1/models").await, 403, "endpoint_not_allowed").await;
    assert_eq!(env.get(&reader, "/v1/usage").await.status(), 200);
    assert_error(env.get(&only_m, "/v1/usage").await, 403, "endpoint_not_allowed").await;
    env.gw.shutdown().await;
}

pub async fn max_tokens_per_request_is_capped(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({"max_tokens_per_request": 20})).await;
    let (_, key) = env.key("acme", json!({"limits": {"max_tokens_per_request": 50}})).await;
    let (s, v) = status_json(env.chat(&key, &chat("m", 21)).await).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("max_tokens")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("20"), "{v}");
    let mut body = chat("m", 1);
    body.as_object_mut().unwrap().remove("max_tokens");
    let (s, v) = status_json(env.chat(&key, &body).await).await;
    assert_eq!(s, 200, "{v}");
    let sent = env.fake.last_request("/v1/chat/completions").unwrap().json();
    assert_eq!(sent["max_tokens"], 20, "the tighter of key and tenant caps is applied: {sent}");
    env.gw.shutdown().await;
}
