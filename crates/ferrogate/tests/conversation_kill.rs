//! A conversation survives a SIGKILL mid-turn (issue 18 item 3), at the HTTP level: a real
//! `ferrogate serve` process is killed while a streamed turn is sending deltas, and while a
//! whole turn waits for its upstream; after a restart on the same store the conversation holds
//! every completed turn — each question followed by its answer — and no half turn, and the next
//! turn works. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::Server;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use ferrogate_testkit::upstream::{FakeUpstream, Recorded, Reply, chat_json, chat_sse};
use futures::StreamExt;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

fn config(fake: &FakeUpstream, db: &TestDatabase) -> String {
    format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n\
         [conversations]\ndatabase_url = \"{}\"\n",
        fake.url("/v1"),
        db.url
    )
}

/// Answers `re: <last message>`, whole or streamed.
fn echo() -> Reply {
    Reply::dynamic(|r: &Recorded| {
        let body = r.json();
        let last = body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str());
        let text = format!("re: {}", last.unwrap_or_default());
        if r.wants_stream(false) {
            Reply::Stream(chat_sse(&[&text], Some((5, 4))))
        } else {
            chat_json(&text, Some((5, 4)))
        }
    })
}

async fn turn(http: &reqwest::Client, gw: &Server, conv: &str, q: &str) -> Value {
    let body = json!({"model": "m", "input": q, "conversation": conv});
    let res = http.post(format!("{}/v1/responses", gw.url)).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

/// The conversation's items as (role, text), oldest first.
async fn items(http: &reqwest::Client, gw: &Server, conv: &str) -> Vec<(String, String)> {
    let url = format!("{}/v1/conversations/{conv}/items?order=asc&limit=100", gw.url);
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let text = |i: &Value| i["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    v["data"].as_array().unwrap().iter().map(|i| (i["role"].as_str().unwrap().to_owned(), text(i))).collect()
}

fn exchange(qs: &[&str]) -> Vec<(String, String)> {
    qs.iter()
        .flat_map(|q| [("user".to_owned(), (*q).to_owned()), ("assistant".to_owned(), format!("re: {q}"))])
        .collect()
}

fn sigkill(gw: &mut Server) {
    gw.child.kill().unwrap(); // SIGKILL: no drain, no flush, no rollback but the database's
    gw.child.wait().unwrap();
}

async fn a_killed_turn_leaves_no_half_turn(kind: DbKind) {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on(CHAT, echo());
    let db = TestDatabase::open(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut gw = Server::start(dir.path(), "first", &config(&fake, &db)).await;
    let conv: Value =
        http.post(format!("{}/v1/conversations", gw.url)).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let conv = conv["id"].as_str().unwrap().to_owned();
    turn(&http, &gw, &conv, "one").await;
    turn(&http, &gw, &conv, "two").await;

    // Killed mid-stream: the upstream sent two deltas and goes silent; the client has seen them.
    let stalled = chat_sse(&["half ", "an answer"], Some((5, 4)));
    fake.push(CHAT, Reply::Stream(stalled.stall_after(3)));
    let body = json!({"model": "m", "input": "three", "conversation": conv, "stream": true});
    let res = http.post(format!("{}/v1/responses", gw.url)).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut seen = String::new();
    let mut frames = res.bytes_stream();
    while !seen.contains("an answer") {
        let chunk = frames.next().await.expect("the stream ended early").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("response.output_text.delta"), "{seen}");
    sigkill(&mut gw);
    drop(frames);

    let mut gw = Server::start(dir.path(), "second", &config(&fake, &db)).await;
    assert_eq!(items(&http, &gw, &conv).await, exchange(&["one", "two"]), "no half streamed turn");
    turn(&http, &gw, &conv, "four").await;
    assert_eq!(items(&http, &gw, &conv).await, exchange(&["one", "two", "four"]));

    // Killed during a whole turn: the upstream has the request and has not answered yet.
    fake.push(CHAT, Reply::Stall);
    let pending = {
        let (http, url) = (http.clone(), format!("{}/v1/responses", gw.url));
        let body = json!({"model": "m", "input": "five", "conversation": conv});
        tokio::spawn(async move { http.post(url).json(&body).send().await.map(|r| r.status().as_u16()) })
    };
    let asked = |r: &Recorded| r.path == CHAT && r.body.windows(4).any(|w| w == b"five");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fake.requests().iter().any(asked) {
        assert!(std::time::Instant::now() < deadline, "the turn never reached the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigkill(&mut gw);
    assert!(pending.await.unwrap().is_err(), "the client lost its connection, with no answer");

    let gw = Server::start(dir.path(), "third", &config(&fake, &db)).await;
    assert_eq!(items(&http, &gw, &conv).await, exchange(&["one", "two", "four"]), "no half whole turn");
    let r = turn(&http, &gw, &conv, "six").await;
    assert_eq!(r["output"][0]["content"][0]["text"], "re: six");
    let sent = fake.last_request(CHAT).unwrap().json();
    let history: Vec<&str> =
        sent["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(
        history,
        ["one", "re: one", "two", "re: two", "four", "re: four", "six"],
        "the next turn sees whole turns only"
    );
    assert_eq!(items(&http, &gw, &conv).await, exchange(&["one", "two", "four", "six"]));
}

#[tokio::test]
async fn a_sigkill_mid_turn_leaves_no_half_turn_sqlite() {
    a_killed_turn_leaves_no_half_turn(DbKind::Sqlite).await;
}

#[tokio::test]
async fn a_sigkill_mid_turn_leaves_no_half_turn_postgres() {
    a_killed_turn_leaves_no_half_turn(DbKind::Postgres).await;
}
