//! Background responses (`POST /v1/responses` with `background: true`), black-box: a real gateway
//! with tenancy on over the testkit's fake upstream — every test on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "tenancy/env.rs"]
#[allow(dead_code)]
mod env;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::upstream::{Reply, chat_json};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use env::{CHAT, Env, status_json};

/// One worker per kind, so a slow response holds the only one; no gateway retries.
const EXTRA: &str =
    "[retry]\nmax_retries = 0\n[batches]\nconcurrency = 1\n[webhooks]\nallow_private_destinations = true\n";

async fn tenant_key(env: &Env, tenant: &str) -> String {
    env.tenant(tenant, json!({})).await;
    env.key(tenant, json!({})).await.1
}

async fn call(env: &Env, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = env.http.request(method, env.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    status_json(req.send().await.unwrap()).await
}

async fn create(env: &Env, key: &str, input: &str) -> Value {
    let body = json!({"model": "m", "input": input, "background": true});
    let (s, b) = call(env, key, reqwest::Method::POST, "/v1/responses", Some(body)).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Polls the response until its status is one of `ends`; every status seen on the way.
async fn wait_for(env: &Env, key: &str, id: &str, ends: &[&str]) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let (s, b) = call(env, key, reqwest::Method::GET, &format!("/v1/responses/{id}"), None).await;
        assert_eq!(s, 200, "{b}");
        let status = b["status"].as_str().unwrap().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if ends.contains(&status.as_str()) {
            return (b, seen);
        }
        assert!(Instant::now() < deadline, "still {status}: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

mod t {
    use super::*;

    pub async fn a_background_response_is_queued_then_completed(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on(CHAT, chat_json("done later", Some((5, 4))).after(Duration::from_millis(300)));
        let key = tenant_key(&env, "acme").await;
        let queued = create(&env, &key, "think about it").await;
        assert_eq!(queued["status"], "queued", "{queued}");
        assert_eq!(queued["background"], true, "{queued}");
        assert!(queued["output"].as_array().unwrap().is_empty(), "{queued}");
        let id = queued["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("resp_") && id.len() == 37, "{id}");

        let (done, seen) = wait_for(&env, &key, &id, &["completed", "failed", "cancelled"]).await;
        assert_eq!(done["status"], "completed", "{done} after {seen:?}");
        assert_eq!(done["id"], id.as_str());
        assert_eq!(done["output"][0]["content"][0]["text"], "done later", "{done}");
        assert_eq!(done["usage"]["output_tokens"], 4, "{done}");
        assert!(seen.iter().all(|s| ["queued", "in_progress", "completed"].contains(&s.as_str())), "{seen:?}");
        // The upstream got the input once; the run left one ledger row, the owner's.
        let upstream: Vec<Value> =
            env.fake.requests().into_iter().filter(|r| r.path.ends_with(CHAT)).map(|r| r.json()).collect();
        assert_eq!(upstream.len(), 1, "{upstream:?}");
        assert_eq!(upstream[0]["messages"][0]["content"], "think about it");
        let rows = db.ledger_with(1, Duration::from_secs(10)).await;
        let rows: Vec<_> = rows.iter().filter(|r| r.endpoint == "responses").collect();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].http_status == 200 && rows[0].tenant_id.is_some() && rows[0].key_id.is_some(), "{rows:?}");
        // Another tenant sees nothing; a finished response cannot be cancelled.
        let other = tenant_key(&env, "globex").await;
        let (s, _) = call(&env, &other, reqwest::Method::GET, &format!("/v1/responses/{id}"), None).await;
        assert_eq!(s, 404);
        let (s, _) = call(&env, &other, reqwest::Method::POST, &format!("/v1/responses/{id}/cancel"), None).await;
        assert_eq!(s, 404);
        let (s, b) = call(&env, &key, reqwest::Method::POST, &format!("/v1/responses/{id}/cancel"), None).await;
        assert_eq!(s, 400, "{b}");
    }

    pub async fn a_queued_response_is_cancelled(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on(CHAT, chat_json("slow", Some((5, 4))).after(Duration::from_secs(3)));
        let key = tenant_key(&env, "acme").await;
        // The first holds the only worker; the second waits in the queue.
        let first = create(&env, &key, "first").await;
        let first_id = first["id"].as_str().unwrap().to_owned();
        wait_for(&env, &key, &first_id, &["in_progress"]).await;
        let second = create(&env, &key, "second").await;
        let id = second["id"].as_str().unwrap().to_owned();
        let (s, b) = call(&env, &key, reqwest::Method::POST, &format!("/v1/responses/{id}/cancel"), None).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
        assert_eq!(b["id"], id.as_str());
        let (b, _) = wait_for(&env, &key, &id, &["cancelled"]).await;
        assert!(b["output"].as_array().unwrap().is_empty(), "{b}");
        // The first finishes; the cancelled one never reached the upstream.
        let (done, _) = wait_for(&env, &key, &first_id, &["completed", "failed"]).await;
        assert_eq!(done["status"], "completed", "{done}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let asked: Vec<Value> = env
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with(CHAT))
            .map(|r| r.json()["messages"][0]["content"].clone())
            .collect();
        assert_eq!(asked, [json!("first")]);
        let (s, b) = call(&env, &key, reqwest::Method::GET, &format!("/v1/responses/{id}"), None).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
    }

    /// A receiver on 127.0.0.1 that passes on every delivery's body.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), rx)
    }

    pub async fn response_events_reach_a_webhook(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on(CHAT, chat_json("ok", Some((5, 4))).after(Duration::from_millis(800)));
        let key = tenant_key(&env, "acme").await;
        let (url, mut rx) = receiver().await;
        let events = json!({"url": url, "events": ["response.completed", "response.cancelled"]});
        let (s, ep) = env.admin_json(reqwest::Method::POST, "/admin/v1/webhooks", Some(events)).await;
        assert_eq!(s, 201, "{ep}");
        let done = create(&env, &key, "one").await;
        let cancelled = create(&env, &key, "two").await;
        let (done_id, cancelled_id) = (done["id"].as_str().unwrap(), cancelled["id"].as_str().unwrap());
        let (s, b) =
            call(&env, &key, reqwest::Method::POST, &format!("/v1/responses/{cancelled_id}/cancel"), None).await;
        assert_eq!(s, 200, "{b}");
        wait_for(&env, &key, done_id, &["completed"]).await;
        let mut got = Vec::new();
        while got.len() < 2 {
            let body = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
            let event: Value = serde_json::from_str(&body).unwrap();
            got.push((event["type"].as_str().unwrap().to_owned(), event["data"]["id"].as_str().unwrap().to_owned()));
        }
        got.sort();
        assert_eq!(
            got,
            [
                ("response.cancelled".to_owned(), cancelled_id.to_owned()),
                ("response.completed".to_owned(), done_id.to_owned())
            ]
        );
    }

    pub async fn background_needs_a_stored_unstreamed_request(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        let key = tenant_key(&env, "acme").await;
        for extra in [json!({"store": false}), json!({"stream": true})] {
            let mut body = json!({"model": "m", "input": "x", "background": true});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let (s, b) = call(&env, &key, reqwest::Method::POST, "/v1/responses", Some(body)).await;
            assert_eq!(s, 400, "{b}");
        }
        let (s, _) =
            call(&env, &key, reqwest::Method::GET, "/v1/responses/resp_0123456789abcdef0123456789abcdef", None).await;
        assert_eq!(s, 404);
    }

    /// Cancelling a response while it runs stops its generation (the upstream call dropped) at
    /// the worker's next heartbeat; it ends `cancelled` and its run left one ledger row.
    pub async fn a_running_response_is_cancelled(db: &TestDatabase) {
        let extra = EXTRA.replace("[batches]\n", "[batches]\nlease_secs = 3\n");
        let env = Env::start(db, &extra).await;
        let started = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&started);
        env.fake.on(
            CHAT,
            Reply::dynamic(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                chat_json("too late", Some((5, 4))).after(Duration::from_secs(30))
            }),
        );
        let key = tenant_key(&env, "acme").await;
        let id = create(&env, &key, "a long one").await["id"].as_str().unwrap().to_owned();
        wait_for(&env, &key, &id, &["in_progress"]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the run did not reach the upstream");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cancelled_at = Instant::now();
        let (s, b) = call(&env, &key, reqwest::Method::POST, &format!("/v1/responses/{id}/cancel"), None).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
        let (b, _) = wait_for(&env, &key, &id, &["cancelled", "completed", "failed"]).await;
        assert_eq!(b["status"], "cancelled", "{b}");
        assert!(b["output"].as_array().unwrap().is_empty(), "{b}");
        // The worker is free again well before the upstream would have answered.
        let rows = db.ledger_with(1, Duration::from_secs(10)).await;
        assert!(cancelled_at.elapsed() < Duration::from_secs(15), "the run was not stopped");
        let rows: Vec<_> = rows.iter().filter(|r| r.endpoint == "responses").collect();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].cancelled && rows[0].key_id.is_some(), "{rows:?}");
        assert_eq!(started.load(Ordering::SeqCst), 1, "run once, not retried");
        let (s, b) = call(&env, &key, reqwest::Method::GET, &format!("/v1/responses/{id}"), None).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("cancelled")), "{b}");
    }
}

ferrogate_testkit::against_every_store!(
    t::response_events_reach_a_webhook,
    t::a_background_response_is_queued_then_completed,
    t::a_queued_response_is_cancelled,
    t::background_needs_a_stored_unstreamed_request,
    t::a_running_response_is_cancelled,
);
