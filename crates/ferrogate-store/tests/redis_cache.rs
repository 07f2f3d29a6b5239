//! The Redis response cache against the machine's shared Redis (a unique key prefix per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_core::cache::{CacheError, CacheKey, CachedCompletion, ResponseCache, cache_key};
use ferrogate_core::conversations::wire::{ResponsesRequest, chat_request};
use ferrogate_store::redis_cache::{RedisCacheOptions, RedisResponseCache};
use ferrogate_testkit::redis::{PrivateRedis, shared_url, unique_prefix};
use serde_json::json;

fn cache(prefix: &str) -> RedisResponseCache {
    let opts = RedisCacheOptions { key_prefix: prefix.to_owned(), timeout: Duration::from_secs(2) };
    RedisResponseCache::open(&shared_url(), opts).unwrap()
}

fn entry(text: &str) -> CachedCompletion {
    let completion = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "smollm2",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 4}}
    });
    CachedCompletion::from_completion(&serde_json::from_value(completion).unwrap()).unwrap()
}

fn key(tenant: &str, text: &str) -> CacheKey {
    let req: ResponsesRequest =
        serde_json::from_value(json!({"model": "m", "input": text, "temperature": 0.0})).unwrap();
    // The chat message's type is inferred: the protocol crate is not a dependency of this one.
    let chat = chat_request(&req, serde_json::from_value(json!([{"role": "user", "content": text}])).unwrap());
    cache_key(tenant, "smollm2", &chat)
}

#[tokio::test]
async fn an_entry_round_trips_and_tenants_stay_apart() {
    let c = cache(&unique_prefix("cache_round_trip"));
    let (ka, kb) = (key("tenant-a", "capital of France?"), key("tenant-b", "capital of France?"));
    assert_eq!(c.get(&ka).await.unwrap(), None);
    c.put(&ka, &entry("Paris."), Duration::from_secs(60)).await.unwrap();
    assert_eq!(c.get(&ka).await.unwrap(), Some(entry("Paris.")));
    assert_eq!(c.get(&kb).await.unwrap(), None, "another tenant's key");
}

#[tokio::test]
async fn entries_expire_with_their_ttl_in_redis() {
    let prefix = unique_prefix("cache_ttl");
    let c = cache(&prefix);
    let k = key("t", "q");
    c.put(&k, &entry("a"), Duration::from_millis(1500)).await.unwrap();
    // Redis holds the TTL (rounded up to whole seconds): read it rather than sleeping it out.
    let client = redis::Client::open(shared_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}{}", k.to_hex())).query_async(&mut conn).await.unwrap();
    assert!((1000..=2000).contains(&pttl), "{pttl}");
    // A replacement replaces the TTL too.
    c.put(&k, &entry("b"), Duration::from_secs(600)).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}{}", k.to_hex())).query_async(&mut conn).await.unwrap();
    assert!(pttl > 590_000, "{pttl}");
    assert_eq!(c.get(&k).await.unwrap(), Some(entry("b")));
}

#[tokio::test]
async fn values_are_compact_and_a_foreign_value_is_corrupt_not_a_panic() {
    let prefix = unique_prefix("cache_compact");
    let c = cache(&prefix);
    let k = key("t", "q");
    c.put(&k, &entry("Paris."), Duration::from_secs(60)).await.unwrap();
    let client = redis::Client::open(shared_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let redis_key = format!("{prefix}{}", k.to_hex());
    let raw: String = redis::cmd("GET").arg(&redis_key).query_async(&mut conn).await.unwrap();
    assert!(raw.len() < 150 && !raw.contains(' '), "{raw}");
    let _: () = redis::cmd("SET").arg(&redis_key).arg("not json").query_async(&mut conn).await.unwrap();
    assert!(matches!(c.get(&k).await, Err(CacheError::Corrupt(_))));
}

#[tokio::test]
async fn a_dead_redis_is_an_error_fast_and_recovers() {
    let mut private = PrivateRedis::start().await;
    let opts = RedisCacheOptions { key_prefix: unique_prefix("cache_dead"), timeout: Duration::from_millis(300) };
    let c = RedisResponseCache::open(&private.url(), opts).unwrap();
    let k = key("t", "q");
    c.put(&k, &entry("x"), Duration::from_secs(60)).await.unwrap();
    private.kill();
    let started = std::time::Instant::now();
    assert!(matches!(c.get(&k).await, Err(CacheError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    private.restart().await;
    let mut recovered = false;
    for _ in 0..50 {
        if c.put(&k, &entry("y"), Duration::from_secs(60)).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the connection came back");
    assert_eq!(c.get(&k).await.unwrap(), Some(entry("y")));
}
