//! No plaintext secret leaves the gateway where it should not (issue 17 item 11): a real
//! `ferrogate serve` with tenancy on (keys created and rotated through the admin API), a static
//! key, an upstream `api_key` and OTLP tracing of every request takes traffic on every front,
//! failed attempts included; then everything an operator or anyone can read is collected —
//! `/metrics`, `/ready` (anonymous and with the master key), the dashboard feed, the admin
//! lists and usage reports, the exported spans, the process's whole log at debug level, the
//! database — and none of it may hold a client key, the master key or the upstream key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::{FakeUpstream, Reply};
use serde_json::{Value, json};

const MASTER: &str = "scan-master-key-Qx7v2Lr9Tz4k";
const STATIC: &str = "sk-static-Wm3pZ8cV1nB6yH0d";
const UPSTREAM: &str = "sk-upstream-Jf5tR2gK8sD1aQ9e";

fn config(fake: &FakeUpstream, collector: &FakeUpstream, db: &TestDatabase) -> String {
    format!(
        "[server]\napi_keys = [\"{STATIC}\"]\n\
         [tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n\
         [tracing]\nenabled = true\nendpoint = \"{}\"\nsampling_ratio = 1.0\nexport_interval_ms = 100\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key = \"{UPSTREAM}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n",
        db.url,
        collector.url(""),
        fake.url("/v1")
    )
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in auth {
            req = req.header(*name, *value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (s, text) = self.send(method, path, &[("authorization", &format!("Bearer {MASTER}"))], body).await;
        assert!(s < 300, "{path}: {s} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The first `n` events of the dashboard feed (SSE), within 10 s.
    async fn dashboard_events(&self, n: usize) -> String {
        let mut res =
            self.http.get(format!("{}/dashboard/events", self.base)).bearer_auth(MASTER).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while text.matches("data:").count() < n {
            let chunk = tokio::time::timeout_at(deadline, res.chunk()).await.expect("dashboard events").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk.expect("the feed stays open")));
        }
        text
    }
}

fn bearer(key: &str) -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {key}"))]
}

/// Traffic with `key` on every front: OpenAI chat (JSON and stream), legacy completions,
/// Anthropic Messages (x-api-key), Ollama chat, models, own usage.
async fn traffic(c: &Client, key: &str) {
    use reqwest::Method;
    let auth = bearer(key);
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let chat = |stream: bool| json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    let calls = [
        (Method::POST, "/v1/chat/completions", Some(chat(false))),
        (Method::POST, "/v1/chat/completions", Some(chat(true))),
        (Method::POST, "/v1/completions", Some(json!({"model": "m", "prompt": "hi", "max_tokens": 4}))),
        (Method::POST, "/api/chat", Some(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))),
        (Method::GET, "/v1/models", None),
    ];
    for (method, path, body) in calls {
        let (s, text) = c.send(method, path, &auth, body).await;
        assert_eq!(s, 200, "{path}: {text}");
    }
    let anthropic = json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let headers = [("x-api-key", key), ("anthropic-version", "2023-06-01")];
    let (s, text) = c.send(Method::POST, "/v1/messages", &headers, Some(anthropic)).await;
    assert_eq!(s, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_key_in_metrics_ready_dashboard_traces_logs_or_database() {
    use reqwest::Method;
    let fake = FakeUpstream::openai().await.unwrap();
    let collector = FakeUpstream::start().await.unwrap();
    collector.on("/v1/traces", Reply::text(200, ""));
    let db = TestDatabase::open(DbKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Server::start(dir.path(), "scan", &config(&fake, &collector, &db)).await;
    let c = Client { http: reqwest::Client::new(), base: gw.url.clone() };

    // Keys through the admin API: two keys, one of them rotated (its first secret is a secret too).
    c.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "acme"}))).await;
    let a = c.admin(Method::POST, "/admin/v1/keys", Some(json!({"tenant": "acme", "name": "a"}))).await;
    let b = c.admin(Method::POST, "/admin/v1/keys", Some(json!({"tenant": "acme", "name": "b"}))).await;
    let rotated = c.admin(Method::POST, &format!("/admin/v1/keys/{}/rotate", b["id"].as_str().unwrap()), None).await;
    let keys: Vec<String> = [&a, &b, &rotated].iter().map(|k| k["key"].as_str().unwrap().to_owned()).collect();

    traffic(&c, &keys[0]).await;
    traffic(&c, &keys[2]).await;
    traffic(&c, STATIC).await;
    // Failed attempts: the rotated-away key, the master key where a client key belongs, a key
    // one character off, the upstream's key presented as a client key.
    let off_by_one = format!("{}x", &keys[0][..keys[0].len() - 1]);
    for wrong in [keys[1].as_str(), off_by_one.as_str(), UPSTREAM] {
        let (s, _) = c.send(Method::GET, "/v1/models", &[("authorization", &format!("Bearer {wrong}"))], None).await;
        assert_eq!(s, 401, "{wrong}");
    }
    let (s, _) = c.send(Method::GET, "/admin/v1/keys", &[("authorization", &format!("Bearer {STATIC}"))], None).await;
    assert_eq!(s, 401, "a client key is not the master key");

    // Everything anyone can read.
    let mut seen: Vec<(&str, String)> = Vec::new();
    for (what, auth) in
        [("ready (anonymous)", None), ("ready (client)", Some(keys[0].as_str())), ("ready (master)", Some(MASTER))]
    {
        let headers: Vec<(&str, String)> = auth.map(|k| bearer(k).to_vec()).unwrap_or_default();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        seen.push((what, c.send(Method::GET, "/ready", &headers, None).await.1));
    }
    let master = bearer(MASTER);
    let master: Vec<(&str, &str)> = master.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let metrics = c.send(Method::GET, "/metrics", &master, None).await.1;
    assert!(metrics.contains("ferrogate_requests_total{"), "{metrics}");
    seen.push(("metrics", metrics));
    seen.push(("dashboard feed", c.dashboard_events(2).await));
    for path in ["/admin/v1/keys", "/admin/v1/tenants", "/admin/v1/usage?group_by=key", "/admin/v1/usage?format=csv"] {
        seen.push((path, c.send(Method::GET, path, &master, None).await.1));
    }
    let own = bearer(&keys[0]);
    let own: Vec<(&str, &str)> = own.iter().map(|(n, v)| (*n, v.as_str())).collect();
    seen.push(("own usage", c.send(Method::GET, "/v1/usage", &own, None).await.1));

    // The spans: wait until every traced request was exported.
    assert!(collector.wait_for_requests(1, Duration::from_secs(20)).await, "no span was exported");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spans: Vec<u8> = collector.requests().iter().flat_map(|r| r.body.to_vec()).collect();
    assert!(spans.windows(4).any(|w| w == b"chat"), "the exported spans are there to scan");
    seen.push(("exported spans", String::from_utf8_lossy(&spans).into_owned()));

    // The upstream did get its key (so the scans below look for a secret that was in use).
    let upstream_auth = fake.last_request("/v1/chat/completions").unwrap();
    assert_eq!(upstream_auth.header("authorization"), Some(format!("Bearer {UPSTREAM}").as_str()));

    // The log, whole, after a graceful stop (everything flushed), and the database.
    gw.stop();
    let log = std::fs::read_to_string(&gw.log).unwrap();
    let settled = log.matches("\"request settled\"").count();
    assert!(settled >= 15, "every inference request's access line is there to scan ({settled}):\n{log}");
    seen.push(("log", log));
    seen.push(("database", db.everything_stored().await));

    let mut secrets: Vec<(&str, &str)> =
        vec![("master key", MASTER), ("static key", STATIC), ("upstream key", UPSTREAM)];
    for k in &keys {
        // The whole key, and its secret part alone (the public prefix may be shown).
        secrets.push(("client key", k.as_str()));
        secrets.push(("client key's secret part", &k[12..]));
    }
    // The scan can see a key where one is: in the response that created it.
    assert!(a.to_string().contains(&keys[0][12..]));
    for (what, text) in &seen {
        for (name, secret) in &secrets {
            assert!(!text.contains(secret), "the {name} {secret} appears in {what}:\n{text}");
        }
    }
}
