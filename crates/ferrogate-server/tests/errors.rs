//! Router tests (no socket): every client mistake gets an OpenAI-shaped 4xx naming the problem,
//! never a panic or a 5xx. The backend is an OpenAI-compatible upstream on a closed port, so any
//! request that got past validation would show up as 502.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferrogate::config;
use ferrogate_server::AppState;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const CONFIG: &str = r#"
[server]
body_limit_bytes = 2048
[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
connect_timeout_ms = 200
[deployments.m]
backends = ["up"]
aliases = ["alias-m"]
"#;

async fn app(toml: &str) -> axum::Router {
    let cfg = config::load_str(toml).unwrap();
    let clock = std::sync::Arc::new(ferrogate_core::tenancy::time::SystemClock);
    let (services, _) = ferrogate::compose::services(&cfg, clock).await.unwrap();
    ferrogate_server::router::router(AppState::new(&cfg.settings, services).unwrap())
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app.oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }));
    (status, headers, v)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path).header("content-type", "application/json").body(body.into()).unwrap()
}

fn assert_openai_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "param and code keys present: {v}");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", "{\"model\": \"m\", ")).await;
    assert_eq!(s, 400);
    assert_openai_error(&v);
    assert!(v["error"]["message"].as_str().unwrap().contains("parse"), "{v}");
}

#[tokio::test]
async fn wrong_type_names_the_param() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"});
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "temperature", "{v}");
}

#[tokio::test]
async fn bad_role_names_the_nested_param() {
    let body = json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]});
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "messages[0].role", "{v}");
}

#[tokio::test]
async fn out_of_range_and_missing_fields() {
    let cases = [
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5}), "top_p"),
        (json!({"model": "m", "messages": []}), "messages"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}), "n"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}), "max_tokens"),
        (json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}), "stop"),
        (json!({"messages": [{"role": "user", "content": "x"}]}), "model"),
    ];
    for (body, param) in cases {
        let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert_openai_error(&v);
        let got = v["error"]["param"].as_str().unwrap_or_default();
        assert!(got == param || v["error"]["message"].as_str().unwrap().contains(param), "{body} → {v}");
    }
}

#[tokio::test]
async fn unknown_model_is_404_model_not_found() {
    let body = json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]});
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    let (s, _, v) = call(app(CONFIG).await, Request::get("/v1/models/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let big = "x".repeat(4096);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": big}]});
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
    assert_eq!(s, 413, "{v}");
    assert_openai_error(&v);
}

#[tokio::test]
async fn empty_body_unknown_route_and_wrong_method() {
    let (s, _, v) = call(app(CONFIG).await, post("/v1/chat/completions", "")).await;
    assert_eq!(s, 400);
    assert_openai_error(&v);
    let (s, _, v) = call(app(CONFIG).await, Request::get("/v2/whatever").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 404);
    assert_openai_error(&v);
    let (s, _, v) = call(app(CONFIG).await, Request::get("/v1/chat/completions").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 405);
    assert_openai_error(&v);
}

#[tokio::test]
async fn unreachable_backend_is_502_without_internal_details() {
    let body = json!({"model": "alias-m", "messages": [{"role": "user", "content": "x"}]});
    let (s, h, v) = call(app(CONFIG).await, post("/v1/chat/completions", body.to_string())).await;
    assert!(s == 502 || s == 504, "{s} {v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("127.0.0.1"), "no upstream address in public errors: {msg}");
    assert!(h.contains_key("x-request-id"));
    assert!(h.contains_key("x-response-time-ms"));
}

#[tokio::test]
async fn models_list_names_deployments_and_aliases() {
    let (s, _, v) = call(app(CONFIG).await, Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["m", "alias-m"]);
    let (s, _, v) = call(app(CONFIG).await, Request::get("/v1/models/alias-m").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "model");
}

#[tokio::test]
async fn request_id_is_accepted_or_generated() {
    let req = Request::get("/health").header("x-request-id", "abc-123").body(Body::empty()).unwrap();
    let (_, h, _) = call(app(CONFIG).await, req).await;
    assert_eq!(h["x-request-id"], "abc-123");
    let (_, h, _) = call(app(CONFIG).await, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(h["x-request-id"].len(), 32);
    let bad = Request::get("/health").header("x-request-id", "a".repeat(300)).body(Body::empty()).unwrap();
    let (_, h, _) = call(app(CONFIG).await, bad).await;
    assert_eq!(h["x-request-id"].len(), 32, "over-long ids are replaced");
}

#[tokio::test]
async fn static_keys_guard_everything_but_probes() {
    let toml = format!("{CONFIG}\n");
    let toml = toml.replacen("[server]\n", "[server]\napi_keys = [\"sk-test-123456\"]\n", 1);
    let body = json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).to_string();
    let (s, _, v) = call(app(&toml).await, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(s, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let wrong = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-wrong-key")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(call(app(&toml).await, wrong).await.0, 401);
    let good = Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-test-123456")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(call(app(&toml).await, good).await.0, 404, "authenticated: reaches routing");
    let good =
        Request::post("/v1/chat/completions").header("x-api-key", "sk-test-123456").body(Body::from(body)).unwrap();
    assert_eq!(call(app(&toml).await, good).await.0, 404);
    assert_eq!(call(app(&toml).await, Request::get("/health").body(Body::empty()).unwrap()).await.0, 200);
    assert_eq!(call(app(&toml).await, Request::get("/v1/models").body(Body::empty()).unwrap()).await.0, 401);
}

#[tokio::test]
async fn not_ready_until_backends_checked() {
    let (s, _, v) = call(app(CONFIG).await, Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(s, 503);
    assert_eq!(v["status"], "not_ready");
    assert!(!v["reasons"].as_array().unwrap().is_empty());
}

/// Issue 17: wrong static keys were never counted (only stored keys were): now 10 per minute and
/// address, then 429 — and the right key still passes.
#[tokio::test]
async fn wrong_static_keys_are_throttled() {
    let toml = format!("[server]\napi_keys = [\"sk-right-key-123\"]\n{}", CONFIG.replace("[server]\n", ""));
    let app = app(&toml).await;
    let get = |key: &str| {
        Request::get("/v1/models").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap()
    };
    for i in 0..10 {
        let (s, _, v) = call(app.clone(), get(&format!("sk-wrong-{i}"))).await;
        assert_eq!(s, 401, "{v}");
    }
    let (s, h, v) = call(app.clone(), get("sk-wrong-10")).await;
    assert_eq!(s, 429, "{v}");
    assert!(h.contains_key("retry-after"));
    assert_eq!(v["error"]["code"], "too_many_auth_failures");
    let (s, _, _) = call(app.clone(), get("sk-right-key-123")).await;
    assert_eq!(s, 200, "a valid key is not locked out");
}

/// Issue 17: `x-ferrogate-backend` showed every client the gateway's topology; now it is opt-in
/// (`server.backend_header`), and so is `x-ferrogate-backend-route` (issue 22).
#[tokio::test]
async fn the_serving_backend_is_named_only_when_configured() {
    use ferrogate_testkit::upstream::{FakeUpstream, chat_json};
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on("/v1/chat/completions", chat_json("ok", Some((1, 1))));
    let toml = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    );
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (s, h, v) = call(app(&toml).await, post("/v1/chat/completions", body.clone())).await;
    assert_eq!(s, 200, "{v}");
    assert!(!h.contains_key("x-ferrogate-backend"), "off by default");
    assert!(!h.contains_key("x-ferrogate-backend-route"), "why it was picked too");
    let (s, h, _) =
        call(app(&format!("[server]\nbackend_header = true\n{toml}")).await, post("/v1/chat/completions", body)).await;
    assert_eq!((s, h.get("x-ferrogate-backend").and_then(|v| v.to_str().ok())), (StatusCode::OK, Some("up")));
    let route = h.get("x-ferrogate-backend-route").and_then(|v| v.to_str().ok());
    assert_eq!(route, Some("backend=up; reason=p2c; match=0.00"));
}
