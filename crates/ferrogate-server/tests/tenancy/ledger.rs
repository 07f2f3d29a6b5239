//! The usage ledger: exactly one row per authenticated inference request — served, streamed,
//! failed upstream, failed mid-stream, cancelled, or rejected after auth — and none for
//! requests refused by auth itself; graceful shutdown writes every queued row.

use std::collections::HashMap;
use std::time::Duration;

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::upstream::{DEFAULT_PIECES, Reply, chat_sse};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::env::{CHAT, Env, TENANCY, assert_error, chat};

async fn send(env: &Env, key: &str, id: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    env.http
        .post(env.url(CHAT))
        .bearer_auth(key)
        .header("x-request-id", id)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub async fn one_row_per_request_whatever_happens(db: &TestDatabase) {
    // No retries: the upstream 500 below must reach the client as a failed request.
    let env = Env::start(db, "[server]\nbody_limit_bytes = 4096\n[retry]\nmax_retries = 0\n").await;
    env.tenant("acme", json!({})).await;
    let (record, key) =
        env.key("acme", json!({"scopes": {"models": ["m"]}, "limits": {"tokens_per_day": 100000}})).await;
    let (_, spent) = env.key("acme", json!({"limits": {"tokens_per_day": 0}})).await;
    let stream = |extra: Value| {
        let mut b = chat("m", 16);
        b["stream"] = json!(true);
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string()
    };

    // Served: plain and streamed.
    assert_eq!(send(&env, &key, "ok-json", chat("m", 8).to_string()).await.status(), 200);
    let res = send(&env, &key, "ok-stream", stream(json!({"stream_options": {"include_usage": true}}))).await;
    assert!(res.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    // Rejected after auth: unknown model, invalid field, model out of scope, budget, body too big.
    assert_eq!(send(&env, &key, "no-model", chat("nope", 8).to_string()).await.status(), 404);
    let bad = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"});
    assert_eq!(send(&env, &key, "bad-field", bad.to_string()).await.status(), 400);
    assert_eq!(send(&env, &key, "out-of-scope", chat("other", 8).to_string()).await.status(), 403);
    assert_eq!(send(&env, &spent, "no-budget", chat("m", 8).to_string()).await.status(), 429);
    assert_eq!(send(&env, &key, "too-big", "x".repeat(8192)).await.status(), 413);
    // Failed upstream before any byte, and mid-stream.
    env.fake.push("/v1/chat/completions", Reply::json(500, &json!({"error": {"message": "boom"}})));
    assert_eq!(send(&env, &key, "upstream-500", chat("m", 8).to_string()).await.status(), 502);
    env.fake.push("/v1/chat/completions", chat_sse(&DEFAULT_PIECES, None).die_after(3));
    let res = send(&env, &key, "died", stream(json!({}))).await;
    assert!(res.text().await.unwrap().contains("\"error\""));
    // Cancelled: the client leaves a stream after its first content chunk.
    env.fake.push("/v1/chat/completions", chat_sse(&DEFAULT_PIECES, None).stall_after(3));
    let res = send(&env, &key, "cancelled", stream(json!({}))).await;
    let mut body = res.bytes_stream();
    let mut dec = SseDecoder::new();
    let mut contents = 0;
    while contents < 2 {
        let chunk = body.next().await.unwrap().unwrap();
        contents += dec.push(&chunk).iter().filter(|e| has_content(&e.data)).count();
    }
    drop(body);
    // Refused by auth: no tenant to charge, no row.
    assert_eq!(send(&env, "fg-aaaaaaaa-nope", "unauthenticated", chat("m", 8).to_string()).await.status(), 401);

    let rows = db.ledger_with(10, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a row too many would show up by now
    let rows = if rows.len() == 10 { db.ledger().await } else { rows };
    let by_id: HashMap<&str, _> = rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    assert_eq!((rows.len(), by_id.len()), (10, 10), "{rows:#?}");
    assert!(!by_id.contains_key("unauthenticated"));
    let key_id = record["id"].as_str().unwrap();
    for (id, status, error, prompt, completion) in [
        ("ok-json", 200, None, 5, 4),
        ("ok-stream", 200, None, 5, 4),
        ("no-model", 404, Some("model_not_found"), 0, 0),
        ("bad-field", 400, Some("invalid_request_error"), 0, 0),
        ("out-of-scope", 403, Some("model_not_allowed"), 0, 0),
        ("no-budget", 429, Some("insufficient_quota"), 0, 0),
        ("too-big", 413, Some("request_too_large"), 0, 0),
        ("upstream-500", 502, Some("backend_error"), 0, 0),
    ] {
        let r = by_id[id];
        assert_eq!(
            (r.http_status, r.error_type.as_deref(), r.prompt_tokens, r.completion_tokens),
            (status, error, prompt, completion),
            "{id}: {r:?}"
        );
        assert_eq!(r.endpoint, "chat.completions", "{id}");
        assert_eq!(r.tenant_id.as_deref(), record["tenant_id"].as_str(), "{id}");
        assert!(!r.cancelled, "{id}");
    }
    assert_eq!(by_id["ok-json"].key_id.as_deref(), Some(key_id));
    assert_eq!(
        (by_id["ok-json"].backend.as_deref(), by_id["ok-json"].model_served.as_deref()),
        (Some("up"), Some("m"))
    );
    assert!(by_id["ok-stream"].streamed && by_id["ok-stream"].ttft_ms.is_some());
    assert_eq!(by_id["no-model"].model_requested, "nope");
    assert_eq!(by_id["out-of-scope"].model_requested, "other");
    // Mid-stream failure: HTTP 200 was sent; the error and the delivered tokens are recorded.
    let died = by_id["died"];
    assert_eq!((died.http_status, died.error_type.is_some(), died.streamed), (200, true, true), "{died:?}");
    assert!(died.prompt_tokens > 0 && died.completion_tokens == 2, "{died:?}");
    // Cancelled: the tokens delivered before the client left.
    let gone = by_id["cancelled"];
    assert!(gone.cancelled && gone.streamed && gone.http_status == 200, "{gone:?}");
    assert_eq!(gone.completion_tokens, 2, "{gone:?}");
    env.gw.shutdown().await;
}

pub async fn shutdown_writes_every_queued_row(db: &TestDatabase) {
    let env = Env::start_with(db, "ledger_flush_interval_ms = 60000", "").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({})).await;
    for _ in 0..5 {
        assert_eq!(env.chat(&key, &chat("m", 4)).await.status(), 200);
    }
    assert_eq!(db.ledger().await.len(), 0, "not written yet: the flush interval is a minute");
    env.gw.shutdown().await;
    let rows = db.ledger().await;
    assert_eq!(rows.len(), 5, "graceful shutdown flushes the ledger");
    assert!(rows.iter().all(|r| r.prompt_tokens == 5 && r.completion_tokens == 4));
}

/// Issue 17: the client's `X-Request-Id` was the ledger's key, so a tenant repeating one id got
/// one row for any number of requests and its budgets, seeded from the ledger, forgot the rest.
/// Now 20 requests with one id leave 20 rows with exact sums, each echoing the id, and a
/// restarted gateway's budgets count all 20.
pub async fn repeated_request_ids_each_get_their_row(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    // 20 × 9 tokens = 180: all 20 fit (refused once the day's usage reaches the budget).
    let (_, key) = env.key("acme", json!({"limits": {"tokens_per_day": 180}})).await;
    for _ in 0..20 {
        let res = send(&env, &key, "same-id", chat("m", 4).to_string()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-request-id"], "same-id", "the client's id is still echoed");
    }
    let rows = db.ledger_with(20, Duration::from_secs(10)).await;
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!((rows.len(), ids.len()), (20, 20), "one row per request, each with its own id");
    assert!(rows.iter().all(|r| r.request_id == "same-id"));
    let sums = rows.iter().fold((0, 0), |(p, c), r| (p + r.prompt_tokens, c + r.completion_tokens));
    assert_eq!(sums, (100, 80), "5 + 4 tokens per request");
    assert_error(env.chat(&key, &chat("m", 4)).await, 429, "insufficient_quota").await;
    let Env { gw, fake, clock, .. } = env;
    gw.shutdown().await;

    // A new instance seeds its budget counters from the ledger: it must see all 20.
    let gw = Env::gateway(&fake, db, TENANCY, "", &clock).await;
    let env = Env { gw, fake, clock, http: reqwest::Client::new() };
    let v = assert_error(env.chat(&key, &chat("m", 4)).await, 429, "insufficient_quota").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("180 of 180"), "{v}");
    env.gw.shutdown().await;
}

/// Whether an SSE event is a chunk with (non-empty) content.
fn has_content(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .is_ok_and(|v| v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()))
}
