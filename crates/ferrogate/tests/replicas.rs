//! Three `ferrogate serve` replicas sharing one PostgreSQL and one Redis, the third with its clock
//! ten minutes ahead (libfaketime): a rate limit admits exactly its count across the fleet, a
//! token budget is overspent by at most one request's reservation, a revoked key fails on every
//! replica within 2 s, and a breaker one replica opens stops traffic on all (issue 22 item 3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::redis::{shared_url, unique_prefix};
use ferrogate_testkit::upstream::{FakeUpstream, chat_json, openai_error};
use serde_json::{Value, json};

const MASTER: &str = "replicas-master-key-0123456789";
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// What the upstream reports per request: 10 prompt + 20 completion tokens.
const USED: i64 = 30;
const MAX_TOKENS: u64 = 40;

fn config(ok: &FakeUpstream, dead: &FakeUpstream, db: &TestDatabase, prefix: &str) -> String {
    format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{db}\"\nledger_flush_interval_ms = 100\n\
         poll_interval_ms = 200\n\
         [limits]\nredis_url = \"{redis}\"\nkey_prefix = \"{prefix}\"\nredis_timeout_ms = 1000\n\
         [[limits.rules]]\nname = \"per-key\"\nscope = \"key\"\nalgorithm = \"sliding_window\"\n\
         requests_per_minute = 50\nmodels = [\"rated\"]\n\
         [breaker]\nconsecutive_failures = 3\nopen_ms = 60000\nshared = true\n\
         [retry]\nmax_retries = 0\n\
         [backends.ok]\nkind = \"openai\"\nbase_url = \"{ok}\"\n\
         [backends.dead]\nkind = \"openai\"\nbase_url = \"{dead}\"\n\
         [deployments.m]\nbackends = [\"ok\"]\n[deployments.rated]\nbackends = [\"ok\"]\n\
         [deployments.flaky]\nbackends = [\"dead\"]\n",
        db = db.url,
        redis = shared_url(),
        ok = ok.url("/v1"),
        dead = dead.url("/v1"),
    )
}

async fn fleet(dir: &Path, cfg: &str) -> Vec<Server> {
    assert!(Path::new(FAKETIME_LIB).exists(), "libfaketime is installed (scripts/setup.sh --test)");
    let skewed = [
        ("LD_PRELOAD", FAKETIME_LIB),
        ("FAKETIME", "+10m"),
        // tokio's timers run on the monotonic clock: only the wall clock is skewed.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    vec![
        Server::start(dir, "a", cfg).await,
        Server::start(dir, "b", cfg).await,
        Server::start_env(dir, "c", cfg, &skewed).await,
    ]
}

async fn post(http: &reqwest::Client, url: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    let res = http.post(format!("{url}{path}")).bearer_auth(key).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn chat(http: &reqwest::Client, url: &str, key: &str, model: &str) -> u16 {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS});
    post(http, url, "/v1/chat/completions", key, body).await.0
}

/// A tenant and a key with `limits`, made through replica `url`; the key's id and secret.
async fn key(http: &reqwest::Client, url: &str, name: &str, limits: Value) -> (String, String) {
    let (status, _) = post(http, url, "/admin/v1/tenants", MASTER, json!({"name": name})).await;
    assert_eq!(status, 201);
    let (status, k) = post(http, url, "/admin/v1/keys", MASTER, json!({"tenant": name, "limits": limits})).await;
    assert_eq!(status, 201, "{k}");
    (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned())
}

/// Seconds into Redis's current minute (the sliding window's fixed windows are Redis's).
async fn redis_second_of_minute() -> u64 {
    let client = redis::Client::open(shared_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    secs % 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_with_a_skewed_clock_share_limits_budgets_revocations_and_breakers() {
    let ok = FakeUpstream::openai().await.unwrap();
    ok.on("/v1/chat/completions", chat_json("fine", Some((10, 20))));
    let dead = FakeUpstream::openai().await.unwrap();
    dead.on("/v1/chat/completions", openai_error(500, "the engine crashed"));
    let db = TestDatabase::open(DbKind::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&ok, &dead, &db, &unique_prefix("replicas"));
    let fleet = fleet(dir.path(), &cfg).await;
    let urls: Vec<String> = fleet.iter().map(|s| s.url.clone()).collect();
    let http = reqwest::Client::new();

    // The skewed replica really runs ten minutes ahead (its Date header is its wall clock).
    let date = |url: String| {
        let http = http.clone();
        async move {
            let res = http.get(format!("{url}/health")).send().await.unwrap();
            let d = res.headers()["date"].to_str().unwrap().to_owned();
            httpdate::parse_http_date(&d).unwrap()
        }
    };
    let skew = date(urls[2].clone()).await.duration_since(date(urls[0].clone()).await).unwrap_or_default();
    assert!(skew >= Duration::from_secs(590), "replica c is {skew:?} ahead");

    // 1. A per-key rule of 50 requests a minute admits exactly 50 across the fleet.
    if redis_second_of_minute().await > 45 {
        tokio::time::sleep(Duration::from_secs(16)).await; // stay inside one fixed window
    }
    let (_, rated) = key(&http, &urls[0], "rated", json!({})).await;
    let sends = (0..90).map(|i| {
        let (http, url, k) = (http.clone(), urls[i % 3].clone(), rated.clone());
        async move { chat(&http, &url, &k, "rated").await }
    });
    let statuses = futures::future::join_all(sends).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, limited), (50, 40), "{statuses:?}");

    // 2. A daily budget of 1,000 tokens: overspent by at most one reservation across replicas.
    let budget = 1_000_i64;
    let (budget_key_id, budgeted) = key(&http, &urls[1], "budgeted", json!({"tokens_per_day": budget})).await;
    let mut served = 0;
    for round in 0..12 {
        let sends = (0..9).map(|i| {
            let (http, url, k) = (http.clone(), urls[i % 3].clone(), budgeted.clone());
            async move { chat(&http, &url, &k, "m").await }
        });
        let statuses = futures::future::join_all(sends).await;
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "round {round}: {statuses:?}");
        served += statuses.iter().filter(|s| **s == 200).count() as i64;
    }
    // The ledgers flush every 100 ms, from a thread of idle priority: on a loaded machine a flush
    // waits for a free CPU, so the rows are waited for (up to 20 s), not assumed after a sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let used = loop {
        let rows: Vec<_> =
            db.ledger().await.into_iter().filter(|r| r.key_id.as_deref() == Some(budget_key_id.as_str())).collect();
        let used: i64 =
            rows.iter().filter(|r| r.http_status == 200).map(|r| r.prompt_tokens + r.completion_tokens).sum();
        if used >= served * USED || std::time::Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(used, served * USED, "one ledger row per answer");
    // The reservation of one request: its prompt estimate (a few tokens) + max_tokens.
    assert!(used <= budget + MAX_TOKENS as i64 + 16, "fleet spent {used} of a {budget}-token budget");
    assert!(used >= budget - USED, "the budget was usable up to its end: {used}");

    // 3. A key revoked on one replica fails on all of them within 2 s (also the skewed one).
    let (victim_id, victim) = key(&http, &urls[0], "victim", json!({})).await;
    for url in &urls {
        assert_eq!(chat(&http, url, &victim, "m").await, 200, "{url} knows (and caches) the key");
    }
    let (status, _) = post(&http, &urls[1], &format!("/admin/v1/keys/{victim_id}/revoke"), MASTER, json!({})).await;
    assert_eq!(status, 200);
    let t0 = Instant::now();
    for url in &urls {
        while chat(&http, url, &victim, "m").await == 200 {
            assert!(t0.elapsed() < Duration::from_secs(2), "{url} still accepts the revoked key after 2 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // 4. Replica a's breaker for the dead backend opens after 3 failures; b and c stop too.
    let (_, caller) = key(&http, &urls[0], "caller", json!({})).await;
    for _ in 0..3 {
        assert!(chat(&http, &urls[0], &caller, "flaky").await >= 500);
    }
    // Chat calls only: the replicas' health checks poll /v1/models too.
    let chats = || dead.requests().iter().filter(|r| r.path.ends_with("/chat/completions")).count();
    let sent = chats();
    assert_eq!(sent, 3, "one attempt per request");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for url in &urls[1..] {
        for _ in 0..3 {
            assert_eq!(chat(&http, url, &caller, "flaky").await, 503, "{url} fails fast");
        }
    }
    assert_eq!(chats(), sent, "no replica sent anything to the dead backend after a's breaker opened");

    for mut s in fleet {
        s.stop();
    }
}
