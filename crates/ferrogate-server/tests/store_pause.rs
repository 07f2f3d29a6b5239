//! Stores that hang mid-traffic (issue 17 item 11): a private PostgreSQL (keys, tenants, usage
//! ledger) and a private Redis (rate-limit counters) are `SIGSTOP`ped while requests flow — a
//! hung server keeps its connections open and answers nothing, which is worse than one that is
//! gone. Requests that need the stopped store get their error within the store deadline (never a
//! hang), requests that do not need it keep being served, and after `SIGCONT` everything recovers
//! and the ledger holds one row per answered request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrogate_core::tenancy::store::REQUEST_PATH_DEADLINE;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::pg::PrivatePostgres;
use ferrogate_testkit::redis::PrivateRedis;
use ferrogate_testkit::upstream::FakeUpstream;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";
const MASTER: &str = "pause-master-key-0123456789";
/// Scheduling slack on a loaded 2-core machine, on top of a deadline.
const SLACK: Duration = Duration::from_millis(1500);

fn body() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
}

fn upstream(fake: &FakeUpstream) -> String {
    format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    )
}

async fn chat(http: &reqwest::Client, gw: &TestGateway, key: Option<&str>) -> (u16, Value, Duration, String) {
    let t0 = Instant::now();
    let mut req = http.post(gw.url(CHAT)).json(&body());
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let v = res.json().await.unwrap_or(Value::Null);
    (status, v, t0.elapsed(), retry)
}

async fn admin(http: &reqwest::Client, gw: &TestGateway, path: &str, body: Value) -> Value {
    let res = http.post(gw.url(path)).bearer_auth(MASTER).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "{path}");
    res.json().await.unwrap()
}

/// Requests with `key` in a loop until `stop`: each one's status and duration.
fn traffic(gw: &TestGateway, key: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(u16, Duration)>> {
    let (http, url) = (reqwest::Client::new(), gw.url(CHAT));
    tokio::spawn(async move {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            let res = http.post(&url).bearer_auth(&key).json(&body()).timeout(Duration::from_secs(30)).send().await;
            out.push((res.map_or(0, |r| r.status().as_u16()), t0.elapsed()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out
    })
}

/// PostgreSQL stopped for 5 s under traffic: keys in the cache keep working (the ledger is written
/// off the request path), a key that must be looked up gets 503 `store_unavailable` within the
/// deadline; after `SIGCONT` that key works, and every answered request has its ledger row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_postgres_costs_503s_within_the_deadline_and_no_ledger_row() {
    let mut pg = PrivatePostgres::start().await;
    let fake = FakeUpstream::openai().await.unwrap();
    let config = format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n{}",
        pg.url(),
        upstream(&fake)
    );
    let gw = TestGateway::start(&config).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    admin(&http, &gw, "/admin/v1/tenants", json!({"name": "acme"})).await;
    let warm = admin(&http, &gw, "/admin/v1/keys", json!({"tenant": "acme", "name": "warm"})).await;
    let cold = admin(&http, &gw, "/admin/v1/keys", json!({"tenant": "acme", "name": "cold"})).await;
    let (warm_key, cold_key) = (warm["key"].as_str().unwrap().to_owned(), cold["key"].as_str().unwrap().to_owned());
    assert_eq!(chat(&http, &gw, Some(&warm_key)).await.0, 200, "the warm key is looked up and cached");

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3).map(|_| traffic(&gw, warm_key.clone(), stop.clone())).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    pg.pause();
    let paused = Instant::now();
    let mut refused = 0;
    while paused.elapsed() < Duration::from_secs(5) {
        let (status, v, took, retry) = chat(&http, &gw, Some(&cold_key)).await;
        assert!(took < REQUEST_PATH_DEADLINE + SLACK, "a hung database must not hang the request: {took:?}");
        assert_eq!((status, v["error"]["code"].as_str()), (503, Some("store_unavailable")), "{v}");
        assert!(!retry.is_empty() && v["error"]["message"].is_string(), "{v}");
        assert!(!v.to_string().contains(&pg.port.to_string()), "no database address in the body: {v}");
        refused += 1;
    }
    assert!(refused >= 2, "{refused}");
    // The probes do not wait for the database either.
    for path in ["/health", "/ready"] {
        let t0 = Instant::now();
        let s = http.get(gw.url(path)).send().await.unwrap().status();
        assert!(t0.elapsed() < SLACK && s.is_success(), "{path}: {s} after {:?}", t0.elapsed());
    }

    pg.resume();
    let resumed = Instant::now();
    loop {
        let (status, v, ..) = chat(&http, &gw, Some(&cold_key)).await;
        if status == 200 {
            break;
        }
        assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
        assert!(resumed.elapsed() < Duration::from_secs(15), "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut warm_results = Vec::new();
    for w in workers {
        warm_results.extend(w.await.unwrap());
    }
    let slowest = warm_results.iter().map(|r| r.1).max().unwrap();
    assert!(warm_results.iter().all(|r| r.0 == 200), "cached keys are served through the pause: {warm_results:?}");
    assert!(slowest < SLACK, "and not held up by it: {slowest:?}");
    let during = warm_results.len();
    assert!(during > 20, "traffic flowed: {during}");

    // One row per answered request: the warm key's (traffic plus the first request) and the
    // cold key's one 200; the refused lookups never identified a key.
    let db = pg.database();
    let answered = during + 2;
    let rows = db.ledger_with(answered, Duration::from_secs(20)).await;
    let of = |id: &Value| rows.iter().filter(|r| r.key_id.as_deref() == id.as_str()).count();
    assert_eq!((of(&warm["id"]), of(&cold["id"])), (during + 1, 1), "{} rows", rows.len());
    assert!(rows.iter().all(|r| r.http_status == 200), "{rows:?}");
    gw.shutdown().await;
}

/// Redis stopped under traffic: each gateway follows its policy within `redis_timeout_ms` —
/// `fail_closed` answers 503 `rate_limiter_unavailable`, `fail_open` admits — and counts it in
/// `/metrics`; after `SIGCONT` both limit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_follows_the_policy_within_the_timeout_and_recovers() {
    let redis = PrivateRedis::start().await;
    let fake = FakeUpstream::openai().await.unwrap();
    let config = |policy: &str| {
        format!(
            "[limits]\nredis_url = \"{}\"\nredis_timeout_ms = 100\non_store_error = \"{policy}\"\n\
             [[limits.rules]]\nname = \"g\"\nscope = \"global\"\nrequests_per_minute = 100000\n{}",
            redis.url(),
            upstream(&fake)
        )
    };
    let closed = TestGateway::start(&config("fail_closed")).await;
    let open = TestGateway::start(&config("fail_open")).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let limited = |gw: &TestGateway| {
        let req = http.post(gw.url(CHAT)).json(&body());
        async move {
            let r = req.send().await.unwrap();
            let header = r.headers().get("x-ratelimit-limit-requests").is_some();
            (r.status().as_u16(), header)
        }
    };
    for gw in [&closed, &open] {
        assert_eq!(limited(gw).await, (200, true));
    }
    let bound = Duration::from_millis(100) + SLACK;

    redis.pause();
    const DURING: usize = 5;
    for _ in 0..DURING {
        let (status, v, took, retry) = chat(&http, &closed, None).await;
        assert!(took < bound, "a hung Redis must not hang the request: {took:?}");
        assert_eq!((status, v["error"]["code"].as_str(), retry.as_str()), (503, Some("rate_limiter_unavailable"), "1"));
        let (status, _, took, _) = chat(&http, &open, None).await;
        assert!(took < bound, "{took:?}");
        assert_eq!(status, 200, "fail_open admits");
    }
    assert_eq!(metric(&closed, "closed").await, DURING as f64);
    assert_eq!(metric(&open, "open").await, DURING as f64);
    assert_eq!((metric(&closed, "open").await, metric(&open, "closed").await), (0.0, 0.0));

    redis.resume();
    for gw in [&closed, &open] {
        let t0 = Instant::now();
        while limited(gw).await != (200, true) {
            assert!(t0.elapsed() < Duration::from_secs(15), "no recovery after SIGCONT");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `ferrogate_rate_limiter_store_errors_total{policy}` from `/metrics` (open gateway: no key).
async fn metric(gw: &TestGateway, policy: &str) -> f64 {
    let text = gw.http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("ferrogate_rate_limiter_store_errors_total{{policy=\"{policy}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}
