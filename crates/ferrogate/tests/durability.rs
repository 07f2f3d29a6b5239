//! Usage rows survive a crash (issue 17 item 7): a gateway SIGKILLed right after answering holds
//! every row in its ledger spool, and the next start writes them — one row per answered request,
//! none twice — on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::FakeUpstream;

const KEY: &str = "sk-durability-0123456789";
const REQUESTS: usize = 60;

fn config(fake: &FakeUpstream, db: &TestDatabase, spool: &std::path::Path, flush_ms: u64) -> String {
    format!(
        "[server]\napi_keys = [\"{KEY}\"]\n\
         [tenancy]\nmaster_key = \"durability-master-key-0123\"\ndatabase_url = \"{}\"\n\
         ledger_flush_interval_ms = {flush_ms}\nledger_spool_dir = \"{}\"\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        db.url,
        spool.display(),
        fake.url("/v1")
    )
}

async fn sigkill_loses_no_row(kind: DbKind) {
    let fake = FakeUpstream::openai().await.unwrap();
    let db = TestDatabase::open(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // A flush interval far beyond the test: every row is still in memory (and the spool) when
    // the process is killed.
    let mut gw = Server::start(dir.path(), "first", &config(&fake, &db, &spool, 600_000)).await;
    let http = reqwest::Client::new();
    let sends = (0..REQUESTS).map(|i| {
        let (http, url) = (http.clone(), format!("{}/v1/chat/completions", gw.url));
        async move {
            let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": format!("n{i}")}]});
            http.post(url).bearer_auth(KEY).json(&body).send().await.unwrap().status().as_u16()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    gw.child.kill().unwrap(); // SIGKILL: no drain, no flush
    gw.child.wait().unwrap();
    assert_eq!(db.ledger().await.len(), 0, "nothing was written before the kill (the test would prove nothing)");

    let _again = Server::start(dir.path(), "second", &config(&fake, &db, &spool, 100)).await;
    let rows = db.ledger_with(REQUESTS, Duration::from_secs(20)).await;
    assert_eq!(rows.len(), REQUESTS, "one row per answered request, recovered from the spool");
    let mut ids: Vec<_> = rows.iter().map(|r| r.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), REQUESTS, "no row twice");
    assert!(rows.iter().all(|r| r.http_status == 200 && r.prompt_tokens > 0));
}

#[tokio::test]
async fn sigkill_loses_no_usage_row_sqlite() {
    sigkill_loses_no_row(DbKind::Sqlite).await;
}

#[tokio::test]
async fn sigkill_loses_no_usage_row_postgres() {
    sigkill_loses_no_row(DbKind::Postgres).await;
}
