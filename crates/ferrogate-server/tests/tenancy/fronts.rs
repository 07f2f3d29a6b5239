//! Anthropic and Ollama clients are metered like OpenAI's: one ledger row per authenticated
//! request, with the front's endpoint name (`messages`, `api.chat`, `api.generate`), the
//! upstream's usage, refusals recorded with their error type — and each refusal answered in the
//! front's own shape.

use std::collections::HashMap;
use std::time::Duration;

use ferrogate_testkit::TestDatabase;
use serde_json::{Value, json};

use crate::env::Env;

async fn send(env: &Env, key: &str, id: &str, path: &str, body: &Value) -> reqwest::Response {
    let req = env.http.post(env.url(path)).header("x-request-id", id).json(body);
    // Anthropic clients send the key as x-api-key, Ollama clients as a bearer token.
    let req = if path.starts_with("/v1/messages") { req.header("x-api-key", key) } else { req.bearer_auth(key) };
    req.send().await.unwrap()
}

pub async fn anthropic_and_ollama_requests_are_metered(db: &TestDatabase) {
    let env = Env::start(db, "[retry]\nmax_retries = 0\n").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({"scopes": {"models": ["m"]}})).await;
    let (_, spent) = env.key("acme", json!({"limits": {"tokens_per_day": 0}})).await;
    let hi = json!([{"role": "user", "content": "hi"}]);
    let messages = json!({"model": "m", "max_tokens": 8, "messages": hi});
    let mut messages_stream = messages.clone();
    messages_stream["stream"] = json!(true);
    let ollama_chat = json!({"model": "m", "messages": hi});
    let generate = json!({"model": "m", "prompt": "hi", "stream": false});

    assert_eq!(send(&env, &key, "messages", "/v1/messages", &messages).await.status(), 200);
    let res = send(&env, &key, "messages-stream", "/v1/messages", &messages_stream).await;
    assert!(res.text().await.unwrap().contains("event: message_stop"));
    let res = send(&env, &key, "api-chat", "/api/chat", &ollama_chat).await;
    assert!(res.text().await.unwrap().contains("\"done\":true"));
    assert_eq!(send(&env, &key, "api-generate", "/api/generate", &generate).await.status(), 200);
    // Refused after auth, each in its front's shape.
    let res = send(&env, &spent, "messages-no-budget", "/v1/messages", &messages).await;
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["type"].as_str(), body["error"]["type"].as_str()), (Some("error"), Some("rate_limit_error")));
    let mut other = ollama_chat.clone();
    other["model"] = json!("other");
    let res = send(&env, &key, "chat-out-of-scope", "/api/chat", &other).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    // Counting tokens is not inference: no row.
    let count = json!({"model": "m", "messages": hi});
    assert_eq!(send(&env, &key, "count", "/v1/messages/count_tokens", &count).await.status(), 200);

    let rows = db.ledger_with(6, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a row too many would show up by now
    let rows = if rows.len() == 6 { db.ledger().await } else { rows };
    let by_id: HashMap<&str, _> = rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    assert_eq!((rows.len(), by_id.len()), (6, 6), "{rows:#?}");
    for (id, endpoint, status, error, tokens, streamed) in [
        ("messages", "messages", 200, None, (5, 4), false),
        ("messages-stream", "messages", 200, None, (5, 4), true),
        ("api-chat", "api.chat", 200, None, (5, 4), true),
        ("api-generate", "api.generate", 200, None, (5, 4), false),
        ("messages-no-budget", "messages", 429, Some("insufficient_quota"), (0, 0), false),
        ("chat-out-of-scope", "api.chat", 403, Some("model_not_allowed"), (0, 0), false),
    ] {
        let r = by_id[id];
        assert_eq!(
            (r.endpoint.as_str(), r.http_status, r.error_type.as_deref(), (r.prompt_tokens, r.completion_tokens)),
            (endpoint, status, error, tokens),
            "{id}: {r:?}"
        );
        assert_eq!(r.streamed, streamed, "{id}");
    }
    env.gw.shutdown().await;
}
