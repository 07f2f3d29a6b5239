//! The response cache through the gateway: a repeated deterministic request is answered from the
//! cache (`x-ferrogate-cache: hit`, no upstream call), as JSON or as a stream; another tenant,
//! `Cache-Control: no-cache` and sampled requests are not; a hit is metered with its tokens and
//! the `cache_hit` flag, and counted in the metrics.

use std::time::Duration;

use ferrogate_testkit::TestDatabase;
use serde_json::{Value, json};

use crate::env::{CHAT, Env, USAGE_TOKENS, status_json};

/// A deployment `cached` on the same fake upstream, with the response cache on.
const CACHED: &str = "[deployments.cached]\nbackends = [\"up\"]\ncache = true\n";

fn ask(temperature: f32) -> Value {
    json!({"model": "cached", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
           "temperature": temperature})
}

fn upstream_calls(env: &Env) -> usize {
    env.fake.requests().iter().filter(|r| r.path == CHAT).count()
}

async fn chat_with(env: &Env, key: &str, body: &Value, cache_control: Option<&str>) -> (Option<String>, u16, Value) {
    let mut req = env.http.post(env.url(CHAT)).bearer_auth(key).json(body);
    if let Some(cc) = cache_control {
        req = req.header("cache-control", cc);
    }
    let res = req.send().await.unwrap();
    let header = res.headers().get("x-ferrogate-cache").map(|v| v.to_str().unwrap().to_owned());
    let (status, v) = status_json(res).await;
    (header, status, v)
}

pub async fn repeated_requests_are_answered_from_the_cache_per_tenant(db: &TestDatabase) {
    let env = Env::start(db, CACHED).await;
    env.tenant("a", json!({})).await;
    env.tenant("b", json!({})).await;
    let (_, ka) = env.key("a", json!({})).await;
    let (_, kb) = env.key("b", json!({})).await;

    let mut sent = 1;
    let (h, s, first) = chat_with(&env, &ka, &ask(0.0), None).await;
    assert_eq!((h.as_deref(), s), (Some("miss"), 200), "{first}");
    assert_eq!(upstream_calls(&env), 1);
    // The cache is filled off the request path: wait until a repeat hits.
    let mut hit = None;
    for _ in 0..100 {
        sent += 1;
        let (h, s, v) = chat_with(&env, &ka, &ask(0.0), None).await;
        assert_eq!(s, 200, "{v}");
        if h.as_deref() == Some("hit") {
            hit = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hit = hit.expect("a repeated request was never answered from the cache");
    let misses_before_hit = upstream_calls(&env);
    assert_eq!(hit["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
    assert_eq!(hit["usage"], first["usage"]);
    assert_eq!(hit["model"], "cached");

    // Another tenant never sees tenant a's entry; no-cache skips the lookup; sampled bypasses.
    sent += 4;
    let (h, _, _) = chat_with(&env, &kb, &ask(0.0), None).await;
    assert_eq!(h.as_deref(), Some("miss"));
    let (h, _, _) = chat_with(&env, &ka, &ask(0.0), Some("no-cache")).await;
    assert_eq!(h.as_deref(), Some("miss"));
    let (h, _, _) = chat_with(&env, &ka, &ask(0.9), None).await;
    assert_eq!(h, None, "a sampled request is not cacheable");
    assert_eq!(upstream_calls(&env), misses_before_hit + 3);

    // A streamed request is served from the cache as a stream.
    let mut body = ask(0.0);
    body["stream"] = json!(true);
    let res = env.http.post(env.url(CHAT)).bearer_auth(&ka).json(&body).send().await.unwrap();
    assert_eq!(res.headers()["x-ferrogate-cache"], "hit");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let content = first["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains(content), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(upstream_calls(&env), misses_before_hit + 3, "the stream came from the cache");

    // A streamed miss fills the cache too: the same request whole is then a hit.
    let mut streamed = ask(0.0);
    streamed["messages"][0]["content"] = json!("stream first");
    streamed["stream"] = json!(true);
    sent += 1;
    let res = env.http.post(env.url(CHAT)).bearer_auth(&ka).json(&streamed).send().await.unwrap();
    assert_eq!(res.headers()["x-ferrogate-cache"], "miss");
    let _ = res.text().await.unwrap();
    streamed["stream"] = json!(false);
    let mut whole_hit = None;
    for _ in 0..100 {
        sent += 1;
        let (h, s, v) = chat_with(&env, &ka, &streamed, None).await;
        assert_eq!(s, 200, "{v}");
        if h.as_deref() == Some("hit") {
            whole_hit = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let whole_hit = whole_hit.expect("a streamed answer never filled the cache");
    assert_eq!(whole_hit["choices"][0]["message"]["content"], content, "the streamed text, whole");

    // Hits are metered with their tokens and flagged; misses are not flagged.
    let calls = upstream_calls(&env);
    let rows = db.ledger_with(sent, Duration::from_secs(10)).await;
    assert_eq!(rows.len(), sent, "one row per request");
    let hits: Vec<_> = rows.iter().filter(|r| r.cache_hit).collect();
    assert_eq!(hits.len(), sent - calls, "one flagged row per hit");
    for r in &hits {
        assert_eq!((r.prompt_tokens + r.completion_tokens) as u64, USAGE_TOKENS, "a hit is charged its tokens");
        assert_eq!((r.backend.as_deref(), r.http_status), (None, 200));
    }
    let metrics = env.admin(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = format!("ferrogate_cache_lookups_total{{deployment=\"cached\",result=\"hit\"}} {}", hits.len());
    assert!(metrics.contains(&line), "{line} not in /metrics");
}
