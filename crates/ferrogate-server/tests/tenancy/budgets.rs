//! Budgets: exhaustion (429 `insufficient_quota` naming the budget and its reset), reset at UTC
//! midnight, tenant caps over keys, cost budgets, budgets surviving a restart, and 200
//! concurrent requests against a nearly spent budget.

use std::time::Duration;

use bytes::Bytes;
use ferrogate_core::tenancy::time::Clock as _;
use ferrogate_core::tenancy::time::{self, DAY_MS};
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::upstream::{Reply, StreamReply};
use serde_json::json;

use crate::env::{Env, TENANCY, USAGE_TOKENS, assert_error, chat};

pub async fn budget_exhaustion_and_reset(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({"limits": {"tokens_per_day": 20}})).await;
    for _ in 0..3 {
        assert_eq!(env.chat(&key, &chat("m", 5)).await.status(), 200, "20 tokens: 0, 9, 18 used before each");
    }
    let tomorrow = time::day_start(env.clock.now_ms()) + DAY_MS;
    let res = env.chat(&key, &chat("m", 5)).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    let wait = u64::try_from((tomorrow - env.clock.now_ms()) / 1000).unwrap();
    assert!(retry.abs_diff(wait) <= 1, "Retry-After {retry} s, midnight in {wait} s");
    let v = assert_error(res, 429, "insufficient_quota").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert!(msg.contains("daily token budget of your key") && msg.contains("27 of 20"), "{msg}");
    assert!(msg.contains(&format!("resets at {}", time::format_datetime(tomorrow))), "{msg}");
    assert_error(env.chat(&key, &chat("m", 5)).await, 429, "insufficient_quota").await;

    env.clock.set(tomorrow);
    assert_eq!(env.chat(&key, &chat("m", 5)).await.status(), 200, "a new day, a new budget");
    env.gw.shutdown().await;
}

pub async fn tenant_budget_caps_all_its_keys(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("globex", json!({"tokens_per_month": 10})).await;
    let (_, a) = env.key("globex", json!({})).await;
    let (_, b) = env.key("globex", json!({"limits": {"tokens_per_month": 1000000}})).await;
    assert_eq!(env.chat(&a, &chat("m", 5)).await.status(), 200);
    assert_eq!(env.chat(&a, &chat("m", 5)).await.status(), 200, "9 of 10 used: still something left");
    let v = assert_error(env.chat(&b, &chat("m", 5)).await, 429, "insufficient_quota").await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("monthly token budget of your tenant"), "{msg}");
    env.gw.shutdown().await;
}

/// Cost: m costs $1 / $2 per million prompt / completion tokens, so 5 + 4 tokens = 13 micro-USD.
pub async fn budgets_survive_a_restart(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (_, tokens_key) = env.key("acme", json!({"limits": {"tokens_per_day": 15}})).await;
    let (_, cost_key) = env.key("acme", json!({"limits": {"usd_per_day": 0.00002}})).await;
    for key in [&tokens_key, &cost_key] {
        assert_eq!(env.chat(key, &chat("m", 5)).await.status(), 200);
        assert_eq!(env.chat(key, &chat("m", 5)).await.status(), 200);
    }
    assert_error(env.chat(&tokens_key, &chat("m", 5)).await, 429, "insufficient_quota").await;
    let v = assert_error(env.chat(&cost_key, &chat("m", 5)).await, 429, "insufficient_quota").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("daily cost budget"), "{v}");
    let Env { gw, fake, clock, .. } = env;
    gw.shutdown().await;

    // A new instance on the same database seeds its counters from the ledger.
    let gw = Env::gateway(&fake, db, TENANCY, "", &clock).await;
    let env = Env { gw, fake, clock, http: reqwest::Client::new() };
    let v = assert_error(env.chat(&tokens_key, &chat("m", 5)).await, 429, "insufficient_quota").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("18 of 15"), "{v}");
    let v = assert_error(env.chat(&cost_key, &chat("m", 5)).await, 429, "insufficient_quota").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("cost budget"), "{v}");
    env.gw.shutdown().await;
}

/// 200 requests at once against a budget with 3 tokens left: every admission sees the others'
/// reservations, so exactly one is served and the overspend is below one request's reservation.
pub async fn concurrent_requests_overspend_by_at_most_one_request(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (record, key) = env.key("acme", json!({"limits": {"tokens_per_day": 12}})).await;
    assert_eq!(env.chat(&key, &chat("m", 10)).await.status(), 200, "9 of 12 used");
    // Slow answers: all 200 requests are in flight together.
    let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"fake","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#;
    let (head, tail) = body.split_at(20);
    let slow = StreamReply::new("application/json", vec![Bytes::from(head), Bytes::from(tail)])
        .delay(Duration::from_millis(500));
    env.fake.on("/v1/chat/completions", Reply::Stream(slow));
    let body = chat("m", 10);
    let requests = (0..200).map(|_| env.chat(&key, &body));
    let statuses: Vec<u16> = futures::future::join_all(requests).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 199, "{statuses:?}");
    let rows = db.ledger_with(201, Duration::from_secs(10)).await;
    let key_id = record["id"].as_str().unwrap();
    let spent: i64 = rows
        .iter()
        .filter(|r| r.key_id.as_deref() == Some(key_id))
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert_eq!(spent, 2 * USAGE_TOKENS as i64, "two requests served, 199 rejected rows with no tokens");
    assert_eq!(rows.len(), 201);
    env.gw.shutdown().await;
}
