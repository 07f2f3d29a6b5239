//! Nothing lost (issue 19 item 6): a 200-line batch on a gateway SIGKILLed 20 times mid-batch and
//! restarted each time completes with completed + failed = total and no `custom_id` twice, on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::{FakeUpstream, chat_json};
use serde_json::{Value, json};

const MASTER: &str = "batch-kill-master-key-0123";
const LINES: usize = 200;
const KILLS: usize = 20;

fn config(fake: &FakeUpstream, db: &TestDatabase) -> String {
    format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n\
         [batches]\ntick_interval_secs = 1\nlease_secs = 3\nmax_attempts = 50\nconcurrency = 4\n\
         [retry]\nmax_retries = 0\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        db.url,
        fake.url("/v1")
    )
}

async fn json_of(res: reqwest::Response) -> Value {
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn sigkills_lose_and_repeat_nothing(kind: DbKind) {
    let fake = FakeUpstream::openai().await.unwrap();
    // A slow upstream (200 ms a line, 4 at once: ~10 s of work), so every kill lands mid-batch.
    fake.on("/v1/chat/completions", chat_json("ok", Some((5, 2))).after(Duration::from_millis(200)));
    let db = TestDatabase::open(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&fake, &db);
    let http = reqwest::Client::new();

    let mut gw = Server::start(dir.path(), "first", &cfg).await;
    let admin = |m: reqwest::Method, url: String| http.request(m, url).bearer_auth(MASTER);
    json_of(
        admin(reqwest::Method::POST, format!("{}/admin/v1/tenants", gw.url))
            .json(&json!({"name": "acme"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let key = json_of(
        admin(reqwest::Method::POST, format!("{}/admin/v1/keys", gw.url))
            .json(&json!({"tenant": "acme", "name": "batch"}))
            .send()
            .await
            .unwrap(),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            json!({"custom_id": format!("c{i}"), "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "m", "messages": [{"role": "user", "content": format!("n{i}")}], "max_tokens": 4}})
            .to_string()
        })
        .collect();
    let boundary = "kill-test";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        lines.join("\n")
    );
    let file = json_of(
        http.post(format!("{}/v1/files", gw.url))
            .bearer_auth(&key)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
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
    let bid = batch["id"].as_str().unwrap().to_owned();

    // Kill it 20 times while lines run, restarting each time.
    for i in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + (i as u64 * 37) % 300)).await;
        gw.child.kill().unwrap(); // SIGKILL: no drain
        gw.child.wait().unwrap();
        gw = Server::start(dir.path(), &format!("run{i}"), &cfg).await;
    }
    let answered = fake.requests().iter().filter(|r| r.path.ends_with("/chat/completions")).count();
    assert!(answered > 0, "lines ran between the kills");
    let mid = json_of(http.get(format!("{}/v1/batches/{bid}", gw.url)).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(mid["status"], "in_progress", "the kills happened mid-batch: {mid}");

    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let b = json_of(http.get(format!("{}/v1/batches/{bid}", gw.url)).bearer_auth(&key).send().await.unwrap()).await;
        if b["status"] == "completed" {
            break b;
        }
        assert!(Instant::now() < deadline, "batch not completed: {b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let counts = &done["request_counts"];
    let (total, completed, failed) =
        (counts["total"].as_u64().unwrap(), counts["completed"].as_u64().unwrap(), counts["failed"].as_u64().unwrap());
    assert_eq!((total, completed + failed), (LINES as u64, LINES as u64), "{done}");
    let mut seen = HashSet::new();
    for fid in [&done["output_file_id"], &done["error_file_id"]].into_iter().filter_map(Value::as_str) {
        let text = http.get(format!("{}/v1/files/{fid}/content", gw.url)).bearer_auth(&key).send().await.unwrap();
        for l in text.text().await.unwrap().lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(seen.insert(v["custom_id"].as_str().unwrap().to_owned()), "custom_id twice: {l}");
        }
    }
    assert_eq!(seen.len(), LINES, "every line in the output or error file exactly once");
    assert_eq!(completed, LINES as u64, "no line exhausted 50 attempts: {done}");
    gw.stop();
}

#[tokio::test]
async fn sigkill_20_times_during_a_batch_on_sqlite() {
    sigkills_lose_and_repeat_nothing(DbKind::Sqlite).await;
}

#[tokio::test]
async fn sigkill_20_times_during_a_batch_on_postgres() {
    sigkills_lose_and_repeat_nothing(DbKind::Postgres).await;
}
