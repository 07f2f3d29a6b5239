//! Files + Batches, the DLQ admin API and webhooks, black-box: a real gateway with tenancy on
//! over the testkit's fake upstream and a fresh database — every test on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "tenancy/env.rs"]
#[allow(dead_code)]
mod env;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::upstream::{Reply, chat_json};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use env::{Env, MASTER, status_json};

/// Batches tick every second; lines run one attempt (a failure is dead at once); no gateway
/// retries, so an upstream 500 is the line's failure.
const EXTRA: &str = "[retry]\nmax_retries = 0\n[batches]\ntick_interval_secs = 1\nmax_attempts = 1\n\
                     [webhooks]\nallow_private_destinations = true\n";

fn line(custom_id: &str, model: &str) -> String {
    json!({
        "custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": custom_id}], "max_tokens": 8},
    })
    .to_string()
}

/// `POST /v1/files` as the SDK sends it: multipart with `purpose` and `file`.
async fn upload(env: &Env, key: &str, content: &str) -> (u16, Value) {
    let boundary = "ferrogate-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let res = env
        .http
        .post(env.url("/v1/files"))
        .bearer_auth(key)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .unwrap();
    status_json(res).await
}

async fn create_batch(env: &Env, key: &str, file_id: &str) -> (u16, Value) {
    let body = json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let res = env.http.post(env.url("/v1/batches")).bearer_auth(key).json(&body).send().await.unwrap();
    status_json(res).await
}

/// Polls the batch until it reaches a final status.
async fn wait_done(env: &Env, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, b) = status_json(env.get(key, &format!("/v1/batches/{id}")).await).await;
        assert_eq!(s, 200, "{b}");
        if ["completed", "failed", "cancelled", "expired"].contains(&b["status"].as_str().unwrap_or("")) {
            return b;
        }
        assert!(Instant::now() < deadline, "batch not finished: {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn content(env: &Env, key: &str, file_id: &str) -> Vec<Value> {
    let res = env.get(key, &format!("/v1/files/{file_id}/content")).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The chat requests the upstream saw (not its health checks).
fn chats(env: &Env) -> Vec<ferrogate_testkit::upstream::Recorded> {
    env.fake.requests().into_iter().filter(|r| r.path.ends_with("/chat/completions")).collect()
}

/// The upstream takes 30 s to answer a chat; the count of chat requests it started on.
fn slow_upstream(env: &Env) -> Arc<AtomicUsize> {
    let started = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&started);
    env.fake.on(
        "/v1/chat/completions",
        Reply::dynamic(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
            chat_json("late", Some((5, 4))).after(Duration::from_secs(30))
        }),
    );
    started
}

async fn tenant_key(env: &Env, tenant: &str) -> String {
    env.tenant(tenant, json!({})).await;
    env.key(tenant, json!({})).await.1
}

mod t {
    use super::*;

    pub async fn a_batch_completes_with_output_and_error_files(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on("/v1/chat/completions", chat_json("done", Some((5, 4))));
        let key = tenant_key(&env, "acme").await;
        let mut lines: Vec<String> = (1..=6).map(|i| line(&format!("req-{i}"), "m")).collect();
        // A line the gateway refuses (400 before any upstream call): the error file's.
        let mut bad: Value = serde_json::from_str(&line("req-bad-param", "m")).unwrap();
        bad["body"]["temperature"] = json!("hot");
        lines.push(bad.to_string());
        let (s, file) = upload(&env, &key, &lines.join("\n")).await;
        assert_eq!(s, 200, "{file}");
        assert_eq!((file["object"].as_str(), file["purpose"].as_str()), (Some("file"), Some("batch")));
        let (s, listed) = status_json(env.get(&key, "/v1/files").await).await;
        assert_eq!((s, listed["data"][0]["id"].clone()), (200, file["id"].clone()));

        let (s, batch) = create_batch(&env, &key, file["id"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{batch}");
        assert_eq!(batch["object"], "batch");
        assert_eq!(batch["status"], "in_progress", "{batch}");
        let done = wait_done(&env, &key, batch["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["request_counts"], json!({"total": 7, "completed": 6, "failed": 1}), "{done}");

        let out = content(&env, &key, done["output_file_id"].as_str().unwrap()).await;
        assert_eq!(out.len(), 6);
        let ids: HashSet<&str> = out.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 6, "no custom_id twice");
        for l in &out {
            assert!(l["id"].as_str().unwrap().starts_with("batch_req_"), "{l}");
            assert_eq!(l["response"]["status_code"], 200, "{l}");
            assert_eq!(l["response"]["body"]["object"], "chat.completion", "{l}");
            assert_eq!(l["response"]["body"]["choices"][0]["message"]["content"], "done", "{l}");
            assert!(l["error"].is_null());
        }
        let errs = content(&env, &key, done["error_file_id"].as_str().unwrap()).await;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0]["custom_id"], "req-bad-param");
        assert_eq!(errs[0]["response"]["status_code"], 400, "{}", errs[0]);
        assert_eq!(errs[0]["response"]["body"]["error"]["param"], "temperature", "{}", errs[0]);
        // Every line went upstream with the line's body, and each left one ledger row.
        let upstream: Vec<Value> = chats(&env).iter().map(|r| r.json()).collect();
        assert_eq!(upstream.len(), 6);
        let mut asked: Vec<&str> = upstream.iter().map(|b| b["messages"][0]["content"].as_str().unwrap()).collect();
        asked.sort_unstable();
        assert_eq!(asked, ["req-1", "req-2", "req-3", "req-4", "req-5", "req-6"]);
        // The refused line leaves its row too (400, no backend), as a live request would.
        let rows = db.ledger_with(7, Duration::from_secs(10)).await;
        let rows: Vec<_> = rows.iter().filter(|r| r.endpoint == "chat.completions").collect();
        assert_eq!(rows.iter().filter(|r| r.http_status == 200).count(), 6, "{rows:?}");
        let refused: Vec<_> = rows.iter().filter(|r| r.http_status == 400).collect();
        assert_eq!(refused.len(), 1, "{rows:?}");
        assert_eq!((refused[0].backend.as_deref(), refused[0].prompt_tokens), (None, 0), "{rows:?}");
        assert!(rows.iter().all(|r| r.tenant_id.is_some() && r.key_id.is_some()), "{rows:?}");
    }

    pub async fn invalid_input_fails_the_batch_with_errors(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        let key = tenant_key(&env, "acme").await;
        let content = [line("a", "m"), line("a", "m"), "{not json".to_owned()].join("\n");
        let (_, file) = upload(&env, &key, &content).await;
        let (s, batch) = create_batch(&env, &key, file["id"].as_str().unwrap()).await;
        assert_eq!(s, 200, "{batch}");
        assert_eq!(batch["status"], "failed", "{batch}");
        let codes: Vec<&str> =
            batch["errors"]["data"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
        assert!(codes.contains(&"duplicate_custom_id") && codes.len() == 2, "{batch}");
        // Bad requests: endpoint, window, unknown file, not multipart.
        let body = json!({"input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h"});
        let res = env.http.post(env.url("/v1/batches")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400);
        let body = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "1h"});
        let res = env.http.post(env.url("/v1/batches")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(create_batch(&env, &key, "file-nope").await.0, 404);
        let res = env.http.post(env.url("/v1/files")).bearer_auth(&key).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(chats(&env).is_empty());
    }

    pub async fn another_tenant_gets_404(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on("/v1/chat/completions", chat_json("done", Some((5, 4))));
        let key = tenant_key(&env, "acme").await;
        let other = tenant_key(&env, "globex").await;
        let (_, file) = upload(&env, &key, &line("x", "m")).await;
        let fid = file["id"].as_str().unwrap();
        let (_, batch) = create_batch(&env, &key, fid).await;
        let bid = batch["id"].as_str().unwrap();
        for path in [format!("/v1/files/{fid}"), format!("/v1/files/{fid}/content"), format!("/v1/batches/{bid}")] {
            assert_eq!(env.get(&other, &path).await.status(), 404, "{path}");
            assert_eq!(env.get(&key, &path).await.status(), 200, "{path}");
        }
        let res =
            env.http.post(env.url(&format!("/v1/batches/{bid}/cancel"))).bearer_auth(&other).send().await.unwrap();
        assert_eq!(res.status(), 404);
        let res = env.http.delete(env.url(&format!("/v1/files/{fid}"))).bearer_auth(&other).send().await.unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(create_batch(&env, &other, fid).await.0, 404);
        let (_, files) = status_json(env.get(&other, "/v1/files").await).await;
        let (_, batches) = status_json(env.get(&other, "/v1/batches").await).await;
        assert_eq!((files["data"].as_array().unwrap().len(), batches["data"].as_array().unwrap().len()), (0, 0));
        let (_, batches) = status_json(env.get(&key, "/v1/batches").await).await;
        assert_eq!(batches["data"][0]["id"], bid);
        wait_done(&env, &key, bid).await;
        let res = env.http.delete(env.url(&format!("/v1/files/{fid}"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(env.get(&key, &format!("/v1/files/{fid}")).await.status(), 404);
    }

    pub async fn dead_lines_are_listed_and_replayed(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        let key = tenant_key(&env, "acme").await;
        env.fake.on("/v1/chat/completions", Reply::json(500, &json!({"error": {"message": "boom"}})));
        let (_, file) = upload(&env, &key, &[line("a", "m"), line("b", "m")].join("\n")).await;
        let (_, batch) = create_batch(&env, &key, file["id"].as_str().unwrap()).await;
        let bid = batch["id"].as_str().unwrap();
        let done = wait_done(&env, &key, bid).await;
        assert_eq!(done["request_counts"], json!({"total": 2, "completed": 0, "failed": 2}), "{done}");
        let errs = content(&env, &key, done["error_file_id"].as_str().unwrap()).await;
        assert!(errs.iter().all(|e| e["error"]["code"] == "server_error"), "{errs:?}");

        // The DLQ: listed by batch and kind, not by another batch; detail with the attempt history.
        let dlq = |q: String| {
            let env = &env;
            async move { env.admin_json(reqwest::Method::GET, &format!("/admin/v1/dlq{q}"), None).await }
        };
        let (s, list) = dlq(format!("?batch_id={bid}&kind=batch_item")).await;
        assert_eq!(s, 200, "{list}");
        let dead = list["data"].as_array().unwrap();
        assert_eq!(dead.len(), 2, "{list}");
        assert_eq!(dlq("?batch_id=batch_other".into()).await.1["data"].as_array().unwrap().len(), 0);
        assert_eq!(dlq("?kind=nonsense".into()).await.0, 400);
        let id = dead[0]["id"].as_str().unwrap();
        let (s, detail) = dlq(format!("/{id}")).await;
        assert_eq!(s, 200, "{detail}");
        assert_eq!(detail["attempts"].as_array().unwrap().len(), 1, "{detail}");
        assert!(detail["job"]["last_error"].as_str().unwrap().contains("502"), "{detail}");
        // A client key is not an operator.
        assert_eq!(env.get(&key, "/admin/v1/dlq").await.status(), 401);

        // Replay one after the upstream recovers: it runs again and leaves the DLQ.
        env.fake.on("/v1/chat/completions", chat_json("done", Some((5, 4))));
        let (s, r) = env.admin_json(reqwest::Method::POST, &format!("/admin/v1/dlq/{id}/replay"), None).await;
        assert_eq!((s, r["replayed"].clone()), (200, json!(true)), "{r}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while chats(&env).len() < 3 {
            assert!(Instant::now() < deadline, "replayed job did not run");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while dlq(format!("/{id}")).await.0 != 404 {
            assert!(Instant::now() < deadline, "replayed job still dead");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Delete the other; then nothing is left.
        let other = dead[1]["id"].as_str().unwrap();
        assert_eq!(env.admin_json(reqwest::Method::DELETE, &format!("/admin/v1/dlq/{other}"), None).await.0, 200);
        assert_eq!(env.admin_json(reqwest::Method::DELETE, &format!("/admin/v1/dlq/{other}"), None).await.0, 404);
        assert_eq!(dlq(String::new()).await.1["data"].as_array().unwrap().len(), 0);
        let (s, r) = env.admin_json(reqwest::Method::POST, "/admin/v1/dlq/replay", Some(json!({}))).await;
        assert_eq!((s, r["replayed"].clone()), (200, json!(0)), "{r}");
    }

    /// A receiver on 127.0.0.1 that records every delivery's headers and body.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), rx)
    }

    pub async fn batch_events_reach_a_signed_webhook(db: &TestDatabase) {
        let env = Env::start(db, EXTRA).await;
        env.fake.on("/v1/chat/completions", chat_json("done", Some((5, 4))));
        let key = tenant_key(&env, "acme").await;
        let (url, mut rx) = receiver().await;
        let (s, ep) = env
            .admin_json(
                reqwest::Method::POST,
                "/admin/v1/webhooks",
                Some(json!({"url": url, "events": ["batch.completed"]})),
            )
            .await;
        assert_eq!(s, 201, "{ep}");
        let secret = ep["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"));
        let (_, listed) = env.admin_json(reqwest::Method::GET, "/admin/v1/webhooks", None).await;
        assert_eq!(listed["data"][0]["id"], ep["id"]);
        assert!(!listed.to_string().contains(&secret), "the secret is shown once");

        let (_, file) = upload(&env, &key, &line("x", "m")).await;
        let (_, batch) = create_batch(&env, &key, file["id"].as_str().unwrap()).await;
        wait_done(&env, &key, batch["id"].as_str().unwrap()).await;
        let (headers, body) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
        let event: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (event["type"].as_str(), event["data"]["id"].clone()),
            (Some("batch.completed"), batch["id"].clone())
        );
        // Verified by the reference Standard Webhooks implementation with the secret shown once.
        let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
        let mut hm = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            hm.insert(name, headers.get(name).unwrap().to_str().unwrap().parse().unwrap());
        }
        verifier.verify(body.as_bytes(), &hm).unwrap();
        let wrong = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(wrong.verify(body.as_bytes(), &hm).is_err());
        // The delivery is recorded as delivered.
        let eid = ep["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, d) =
                env.admin_json(reqwest::Method::GET, &format!("/admin/v1/webhooks/{eid}/deliveries"), None).await;
            if d["data"][0]["status"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "{d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(env.admin_json(reqwest::Method::DELETE, &format!("/admin/v1/webhooks/{eid}"), None).await.0, 200);
        assert_eq!(env.admin_json(reqwest::Method::GET, &format!("/admin/v1/webhooks/{eid}"), None).await.0, 404);
        let _ = MASTER;
    }

    /// `[tiers] large_background_only`: an interactive request `auto` routes to the large tier is
    /// refused with `background_required` (pointing at `background: true`); a background
    /// response and a batch line routed there run on it.
    pub async fn the_large_tier_serves_only_queued_work(db: &TestDatabase) {
        let tiers = "[tiers]\nsmall = \"m\"\nlarge = \"other\"\nlarge_background_only = true\n\
                     [tiers.tenants]\nbig = \"large\"\n";
        let env = Env::start(db, &format!("{EXTRA}{tiers}")).await;
        env.fake.on("/v1/chat/completions", chat_json("done", Some((5, 4))));
        let small = tenant_key(&env, "acme").await;
        let big = tenant_key(&env, "big").await;
        // Interactive: the small tier serves; the large one (tenant or header pin) is refused.
        let (s, v) = status_json(env.chat(&small, &env::chat("auto", 4)).await).await;
        assert_eq!((s, v["model"].as_str()), (200, Some("m")), "{v}");
        let v = env::assert_error(env.chat(&big, &env::chat("auto", 4)).await, 400, "background_required").await;
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("large tier") && message.contains("\"background\": true"), "{v}");
        assert!(message.contains("POST /v1/batches") && v["error"]["param"] == "model", "{v}");
        let pinned =
            env.http.post(env.url("/v1/chat/completions")).bearer_auth(&small).header("x-ferrogate-tier", "large");
        env::assert_error(pinned.json(&env::chat("auto", 4)).send().await.unwrap(), 400, "background_required").await;
        let interactive = json!({"model": "auto", "input": "hi"});
        let res = env.http.post(env.url("/v1/responses")).bearer_auth(&big).json(&interactive).send().await.unwrap();
        let v = env::assert_error(res, 400, "background_required").await;
        assert_eq!(v["error"]["param"], "background", "{v}");
        assert!(chats(&env).iter().all(|r| r.json()["model"] != "other"), "the large tier was not asked");

        // A background response routed to the large tier runs there.
        let queued = json!({"model": "auto", "input": "hi", "background": true});
        let res = env.http.post(env.url("/v1/responses")).bearer_auth(&big).json(&queued).send().await.unwrap();
        let (s, r) = status_json(res).await;
        assert_eq!((s, r["status"].as_str()), (200, Some("queued")), "{r}");
        let path = format!("/v1/responses/{}", r["id"].as_str().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let done = loop {
            let (_, b) = status_json(env.get(&big, &path).await).await;
            if ["completed", "failed", "cancelled"].contains(&b["status"].as_str().unwrap_or("")) {
                break b;
            }
            assert!(Instant::now() < deadline, "{b}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(done["status"], "completed", "{done}");

        // So does a batch line.
        let (_, file) = upload(&env, &big, &line("deep", "auto")).await;
        let (_, batch) = create_batch(&env, &big, file["id"].as_str().unwrap()).await;
        let done = wait_done(&env, &big, batch["id"].as_str().unwrap()).await;
        assert_eq!(done["request_counts"], json!({"total": 1, "completed": 1, "failed": 0}), "{done}");
        let out = content(&env, &big, done["output_file_id"].as_str().unwrap()).await;
        assert_eq!(out[0]["response"]["body"]["model"], "other", "{}", out[0]);
        let served: Vec<Value> = chats(&env).iter().map(|r| r.json()["model"].clone()).collect();
        assert_eq!(served.iter().filter(|m| *m == "other").count(), 2, "{served:?}");
    }

    /// Cancelling a batch while a line runs: the running line is stopped (its upstream call
    /// dropped) at the worker's next heartbeat, the queued ones never run, the batch ends
    /// `cancelled` with every line counted failed (`batch_cancelled`), and the line that ran left
    /// one ledger row.
    pub async fn a_batch_cancelled_mid_line_stops_it(db: &TestDatabase) {
        // One line at a time; heartbeats every second (a third of the lease).
        let extra = EXTRA.replace("[batches]\n", "[batches]\nconcurrency = 1\nlease_secs = 3\n");
        let env = Env::start(db, &extra).await;
        let started = slow_upstream(&env);
        let key = tenant_key(&env, "acme").await;
        let lines: Vec<String> = (1..=3).map(|i| line(&format!("req-{i}"), "m")).collect();
        let (_, file) = upload(&env, &key, &lines.join("\n")).await;
        let (_, batch) = create_batch(&env, &key, file["id"].as_str().unwrap()).await;
        let bid = batch["id"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while started.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no line reached the upstream");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cancelled_at = Instant::now();
        let res = env.http.post(env.url(&format!("/v1/batches/{bid}/cancel"))).bearer_auth(&key).send().await.unwrap();
        let (s, b) = status_json(res).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("cancelling")), "{b}");
        let done = wait_done(&env, &key, bid).await;
        assert!(cancelled_at.elapsed() < Duration::from_secs(15), "the running line was not stopped");
        assert_eq!(done["status"], "cancelled", "{done}");
        assert_eq!(done["request_counts"], json!({"total": 3, "completed": 0, "failed": 3}), "{done}");
        assert!(done["output_file_id"].is_null(), "{done}");
        let errs = content(&env, &key, done["error_file_id"].as_str().unwrap()).await;
        let ids: Vec<&str> = errs.iter().map(|e| e["custom_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["req-1", "req-2", "req-3"]);
        assert!(errs.iter().all(|e| e["error"]["code"] == "batch_cancelled"), "{errs:?}");
        // Only the running line reached the upstream (which never answered it), and only it left
        // a row: cancelled.
        assert_eq!((started.load(Ordering::SeqCst), chats(&env).len()), (1, 0));
        let rows = db.ledger_with(1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rows: Vec<_> = rows.iter().filter(|r| r.endpoint == "chat.completions").collect();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].cancelled && rows[0].key_id.is_some() && rows[0].backend.is_some(), "{rows:?}");
        assert_eq!(db.ledger().await.len(), 1, "no row after the cancel settled");
    }

    /// `POST /v1/files` has its own body bound, `[batches] max_file_bytes` (6 MiB here) plus the
    /// multipart framing, not `server.body_limit_bytes` (4 MiB, still every other route's): a
    /// 5 MiB file is stored whole; a file over the cap is 413 in OpenAI's shape.
    pub async fn uploads_are_bounded_by_max_file_bytes(db: &TestDatabase) {
        const MIB: usize = 1024 * 1024;
        let extra = EXTRA.replace("[batches]\n", "[batches]\nmax_file_bytes = 6291456\n");
        let env = Env::start(db, &extra).await;
        let key = tenant_key(&env, "acme").await;
        let jsonl = |bytes: usize| {
            let row = format!("{}\n", line("x", "m"));
            let mut s = row.repeat(bytes / row.len());
            s.push_str(&" ".repeat(bytes - s.len()));
            s
        };
        // The upload helper's framing adds "\r\n" after the content, which stays outside the file.
        let five = jsonl(5 * MIB);
        let (s, file) = upload(&env, &key, &five).await;
        assert_eq!(s, 200, "{file}");
        assert_eq!(file["bytes"], 5 * MIB, "{file}");
        let res = env.get(&key, &format!("/v1/files/{}/content", file["id"].as_str().unwrap())).await;
        assert_eq!(res.text().await.unwrap(), five);
        // Just over the cap (within the framing's room): the handler's 413, naming the file.
        let (s, v) = upload(&env, &key, &jsonl(6 * MIB + 1)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["param"].as_str()),
            (413, Some("request_too_large"), Some("file")),
            "{v}"
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("6291456"), "{v}");
        // Far over: the body layer's 413 (or the connection closed under the rest of the body).
        let boundary = "ferrogate-test-boundary";
        let big = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\n\r\n{}",
            jsonl(8 * MIB)
        );
        let res = env
            .http
            .post(env.url("/v1/files"))
            .bearer_auth(&key)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(big)
            .send()
            .await;
        if let Ok(res) = res {
            let (s, v) = status_json(res).await;
            assert_eq!((s, v["error"]["code"].as_str()), (413, Some("request_too_large")), "{v}");
        }
        // Only the 5 MiB file was stored; a chat request is still held to the 4 MiB body limit.
        let (_, listed) = status_json(env.get(&key, "/v1/files").await).await;
        assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
        let huge = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(5 * MIB)}]});
        let res = env.http.post(env.url("/v1/chat/completions")).bearer_auth(&key).json(&huge).send().await;
        if let Ok(res) = res {
            let (s, v) = status_json(res).await;
            assert_eq!((s, v["error"]["code"].as_str()), (413, Some("request_too_large")), "{v}");
        }
        assert!(chats(&env).is_empty());
    }
}

ferrogate_testkit::against_every_store!(
    t::a_batch_completes_with_output_and_error_files,
    t::invalid_input_fails_the_batch_with_errors,
    t::another_tenant_gets_404,
    t::dead_lines_are_listed_and_replayed,
    t::batch_events_reach_a_signed_webhook,
    t::the_large_tier_serves_only_queued_work,
    t::a_batch_cancelled_mid_line_stops_it,
    t::uploads_are_bounded_by_max_file_bytes,
);
