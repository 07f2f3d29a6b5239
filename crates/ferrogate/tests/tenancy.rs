//! Multi-tenancy across real `ferrogate serve` processes: a revocation made on one instance
//! reaches another one sharing PostgreSQL within 2 s; the CLI drives the admin API (tenants, keys,
//! usage as table, JSON and CSV); and after all of it neither the database files nor the logs
//! hold a key in plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::FakeUpstream;
use serde_json::{Value, json};

const MASTER: &str = "process-test-master-key-0123";

mod common;
use common::Server;

fn config(fake: &FakeUpstream, db: &TestDatabase, master: bool) -> String {
    let master = if master { format!("master_key = \"{MASTER}\"\n") } else { String::new() };
    format!(
        "[tenancy]\n{master}database_url = \"{}\"\nledger_flush_interval_ms = 200\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        db.url,
        fake.url("/v1")
    )
}

async fn chat(http: &reqwest::Client, url: &str, key: &str) -> u16 {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let res = http.post(format!("{url}/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap();
    res.status().as_u16()
}

#[tokio::test]
async fn revoke_reaches_another_instance_within_2s() {
    let db = TestDatabase::open(DbKind::Postgres).await;
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::start(dir.path(), "a", &config(&fake, &db, true)).await;
    // B serves stored keys from the same database, with no admin API of its own.
    let mut b = Server::start(dir.path(), "b", &config(&fake, &db, false)).await;
    let http = reqwest::Client::new();
    let admin = |path: &str, body: Value| http.post(format!("{}{path}", a.url)).bearer_auth(MASTER).json(&body).send();
    assert_eq!(admin("/admin/v1/tenants", json!({"name": "acme"})).await.unwrap().status(), 201);
    let key: Value = admin("/admin/v1/keys", json!({"tenant": "acme"})).await.unwrap().json().await.unwrap();
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    for _ in 0..3 {
        assert_eq!(chat(&http, &b.url, secret).await, 200, "B knows the key (and caches it)");
    }
    assert_eq!(http.get(format!("{}/admin/v1/keys", b.url)).bearer_auth(MASTER).send().await.unwrap().status(), 401);

    let revoked = admin(&format!("/admin/v1/keys/{id}/revoke"), json!({})).await.unwrap();
    assert_eq!(revoked.status(), 200);
    let t0 = Instant::now();
    assert_eq!(chat(&http, &a.url, secret).await, 401, "the revoking instance refuses it at once");
    while chat(&http, &b.url, secret).await == 200 {
        assert!(t0.elapsed() < Duration::from_secs(2), "B still accepts the revoked key after 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    a.stop();
    b.stop();
}

fn cli(url: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogate"))
        .args(args)
        .args(["--url", url])
        .env("FERROGATE_MASTER_KEY", MASTER)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn cli_round_trip_and_no_plaintext_key_in_database_or_logs() {
    let db = TestDatabase::open(DbKind::Sqlite).await;
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Server::start(dir.path(), "gw", &config(&fake, &db, true)).await;
    let url = gw.url.clone();

    assert!(
        stdout(&cli(&url, &["tenants", "create", "acme", "--daily-tokens", "1000"])).contains("Created tenant acme")
    );
    let out =
        cli(&url, &["keys", "create", "--tenant", "acme", "--models", "m", "--rpm", "60", "--daily-tokens", "100000"]);
    let text = stdout(&out);
    assert!(text.contains("only time the key is shown"), "{text}");
    let created: Value =
        serde_json::from_slice(&cli(&url, &["keys", "create", "--tenant", "acme", "--name", "ci", "--json"]).stdout)
            .unwrap();
    let first = text.split_whitespace().find(|w| w.starts_with("fg-") && w.len() == 55).unwrap().to_owned();
    let second = created["key"].as_str().unwrap().to_owned();
    let second_id = created["id"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    assert_eq!(chat(&http, &url, &first).await, 200);
    assert_eq!(chat(&http, &url, &second).await, 200);
    let wrong = format!("{}{}", &first[..12], "x".repeat(43));
    assert_eq!(chat(&http, &url, &wrong).await, 401);
    let rotated: Value = serde_json::from_slice(&cli(&url, &["keys", "rotate", &second_id, "--json"]).stdout).unwrap();
    let third = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(chat(&http, &url, &second).await, 401);
    assert_eq!(chat(&http, &url, &third).await, 200);
    // By the prefix the key was shown with, as well as by id.
    assert!(stdout(&cli(&url, &["keys", "revoke", &second[..11]])).contains("Revoked key"));
    assert_eq!(chat(&http, &url, &third).await, 401);

    let list = stdout(&cli(&url, &["keys", "list"]));
    assert!(list.contains(&first[..11]) && list.contains("revoked") && list.contains("acme"), "{list}");
    assert!(list.contains("requests_per_minute=60"), "{list}");
    for column in ["MODELS", "ENDPOINTS", "EXPIRES", "never"] {
        assert!(list.contains(column), "no {column} in:\n{list}");
    }
    let tenants = stdout(&cli(&url, &["tenants", "list"]));
    assert!(tenants.contains("acme") && tenants.contains("tokens_per_day=1000"), "{tenants}");

    // The ledger flushes from a thread of idle priority: on a loaded machine a flush waits for a
    // free CPU, so the rows are waited for (up to 20 s), not assumed after a sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report: Value = serde_json::from_slice(&cli(&url, &["usage", "--by", "tenant", "--json"]).stdout).unwrap();
        if report["data"][0]["requests"].as_u64() >= Some(3) || std::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["data"][0]["requests"], 3, "three requests were served: {report}");
    let table = stdout(&cli(&url, &["usage", "--by", "key", "--since", "24h"]));
    assert!(table.contains("REQUESTS") && table.contains(&first[..11]) && table.contains("TOTAL"), "{table}");
    assert_eq!(report["data"][0]["label"], "acme", "{report}");
    let csv = stdout(&cli(&url, &["usage", "--by", "model", "--csv"]));
    assert!(csv.starts_with("group,label,requests,") && csv.contains("\nm,,3,"), "{csv}");

    // A failing command says why and exits 1.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogate"))
        .args(["keys", "create", "--tenant", "nobody", "--url", &url])
        .env("FERROGATE_MASTER_KEY", MASTER)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No tenant 'nobody'"));
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogate"))
        .args(["keys", "list", "--url", &url])
        .env_remove("FERROGATE_MASTER_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FERROGATE_MASTER_KEY"));

    gw.stop();
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert!(log.contains("API key created"), "debug logs were written");
    // Where the store is, as JSON fields (never Rust Debug text), logged at start.
    let connected = log.lines().find(|l| l.contains("store connected")).expect("a store connected line");
    assert!(connected.contains("\"db\":\"sqlite\"") && connected.contains("\"location\":\"/"), "{connected}");
    for debug_text in ["NotReady(", "LedgerStats {", "CONT log"] {
        assert!(!log.contains(debug_text), "{debug_text} in the log");
    }
    let settled = log.lines().filter(|l| l.contains("request settled") && l.contains(&first[..11])).count();
    assert_eq!(settled, 1, "settle lines name the key by its prefix");
    // Issue 17: the access log records the client's address (the seed asks for it).
    let access = log.lines().filter(|l| l.contains("request settled") || l.contains("request rejected"));
    assert!(access.clone().count() > 0 && access.clone().all(|l| l.contains("\"client_ip\":\"127.0.0.1\"")), "{log}");
    let stored = db.everything_stored().await;
    assert!(stored.contains(&first[..11]), "the database holds the visible prefix");
    for key in [&first, &second, &third] {
        let secret = &key[12..];
        assert!(!log.contains(secret), "a key secret is in the log");
        assert!(!stored.contains(secret), "a key secret is in the database");
    }
    assert!(!log.contains(MASTER) && !stored.contains(MASTER), "the master key leaked");
    assert!(!log.contains(&wrong[12..]), "a presented wrong key is in the log");
}

/// Against a gateway with tenancy off the CLI says so, instead of a bare 404.
#[tokio::test]
async fn cli_against_a_gateway_with_tenancy_off_says_so() {
    let fake = FakeUpstream::openai().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    );
    let mut gw = Server::start(dir.path(), "off", &toml).await;
    for args in [&["tenants", "list"][..], &["keys", "list"], &["usage", "--by", "model"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrogate"))
            .args(args)
            .args(["--url", &gw.url])
            .env("FERROGATE_MASTER_KEY", MASTER)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("has tenancy off") && err.contains("FERROGATE_MASTER_KEY"), "{args:?}: {err}");
        // Not the bare HTTP status (matched as words: the port in the URL may contain "404").
        assert!(!err.contains("404 Not Found") && !err.contains("Unknown request URL"), "{err}");
    }
    gw.stop();
}
