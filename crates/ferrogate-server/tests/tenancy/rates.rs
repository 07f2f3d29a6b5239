//! The keys' and tenants' per-minute rates (`requests_per_minute`, `tokens_per_minute`) go
//! through the same limiter as the configured rules: in process they follow the gateway's clock,
//! and with `limits.redis_url` they hold across gateways.

use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::redis::{shared_url, unique_prefix};
use serde_json::{Value, json};

use crate::env::{Env, TENANCY, assert_error, chat};

pub async fn key_and_tenant_rates_are_rate_limits(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({"tokens_per_minute": 100_000})).await;
    let (_, key) = env.key("acme", json!({"limits": {"requests_per_minute": 3}})).await;
    for left in ["2", "1", "0"] {
        let r = env.chat(&key, &chat("m", 5)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], left);
        assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "100000", "the tenant's token rate");
    }
    let r = env.chat(&key, &chat("m", 5)).await;
    assert_eq!(r.headers()["retry-after"], "20");
    let v = assert_error(r, 429, "rate_limit_exceeded").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("on your API key"), "{v}");
    // The limiter follows the gateway's clock: 20 s later one request has refilled.
    env.clock.advance(20_000);
    assert_eq!(env.chat(&key, &chat("m", 5)).await.status(), 200);
    assert_error(env.chat(&key, &chat("m", 5)).await, 429, "rate_limit_exceeded").await;
    env.gw.shutdown().await;
}

pub async fn key_rates_hold_across_gateways_sharing_redis(db: &TestDatabase) {
    let limits = format!("[limits]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n", shared_url(), unique_prefix("keyrate"));
    let env = Env::start(db, &limits).await;
    let other = Env::gateway(&env.fake, db, TENANCY, &limits, &env.clock).await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({"limits": {"requests_per_minute": 4}})).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let url = if i % 2 == 0 { env.url("/v1/chat/completions") } else { other.url("/v1/chat/completions") };
        let r = env.http.post(url).bearer_auth(&key).json(&chat("m", 5)).send().await.unwrap();
        statuses.push(r.status().as_u16());
        let _: Value = r.json().await.unwrap();
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 4, "{statuses:?}");
    other.shutdown().await;
    env.gw.shutdown().await;
}
