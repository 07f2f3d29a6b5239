//! `ferrogate dlq list|show|replay|purge` against a real gateway whose batch lines all failed
//! into the dead-letter queue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::{FakeUpstream, Reply};
use serde_json::{Value, json};

const MASTER: &str = "dlq-cli-master-key-0123456";

fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogate"))
        .args(["dlq", "--url", url])
        .args(args)
        .env("FERROGATE_MASTER_KEY", MASTER)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn json_of(res: reqwest::Response) -> Value {
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

#[tokio::test]
async fn dlq_commands_list_show_replay_and_purge() {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on("/v1/chat/completions", Reply::json(500, &json!({"error": {"message": "boom"}})));
    let db = TestDatabase::open(DbKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\n\
         [batches]\ntick_interval_secs = 1\nmax_attempts = 1\n[retry]\nmax_retries = 0\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        db.url,
        fake.url("/v1")
    );
    let gw = Server::start(dir.path(), "gw", &cfg).await;
    let http = reqwest::Client::new();
    let admin = |path: &str| http.post(format!("{}{path}", gw.url)).bearer_auth(MASTER);
    json_of(admin("/admin/v1/tenants").json(&json!({"name": "acme"})).send().await.unwrap()).await;
    let key = json_of(admin("/admin/v1/keys").json(&json!({"tenant": "acme", "name": "k"})).send().await.unwrap())
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = |c: &str| {
        json!({"custom_id": c, "method": "POST", "url": "/v1/chat/completions",
               "body": {"model": "m", "messages": [{"role": "user", "content": c}]}})
        .to_string()
    };
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{}\n{}\r\n--b--\r\n",
        line("a"),
        line("b")
    );
    let file = json_of(
        http.post(format!("{}/v1/files", gw.url))
            .bearer_auth(&key)
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let batch = json_of(
        http.post(format!("{}/v1/batches", gw.url))
            .bearer_auth(&key)
            .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let bid = batch["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let (ok, out, err) = cli(&gw.url, &["list", "--batch", bid, "--json"]);
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        if v["data"].as_array().unwrap().len() == 2 {
            break v;
        }
        assert!(Instant::now() < deadline, "lines not dead: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = dead["data"][0]["id"].as_str().unwrap();
    let (ok, table, _) = cli(&gw.url, &["list", "--kind", "batch_item"]);
    assert!(ok && table.starts_with("ID") && table.contains(id) && table.contains("502"), "{table}");
    let (ok, shown, _) = cli(&gw.url, &["show", id]);
    assert!(ok && shown.contains("\"attempts\""), "{shown}");
    let (ok, _, err) = cli(&gw.url, &["replay"]);
    assert!(!ok && err.contains("--all"), "{err}");
    let (ok, out, err) = cli(&gw.url, &["replay", id]);
    assert!(ok && out.contains("\"replayed\": true"), "{out}{err}");
    let (ok, out, err) = cli(&gw.url, &["purge", "--all", "--batch", bid]);
    assert!(ok, "{err}");
    let purged: Value = serde_json::from_str(&out).unwrap();
    // The other line for sure; the replayed one too if it already failed again.
    assert!(purged["deleted"].as_u64().unwrap() >= 1, "{out}");
    let (ok, _, err) = cli(&gw.url, &["show", "job_nope"]);
    assert!(!ok && err.contains("404"), "{err}");
}
