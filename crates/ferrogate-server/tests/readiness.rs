//! `/ready` beyond backend health (issue 17, item 10): `server.warmup` sends one short request
//! per deployment before `/ready` turns 200, and `/ready` answers 503 while every deployment's
//! queue is full (the seed's readiness rule: send new work to another replica).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{DEFAULT_PIECES, FakeUpstream, chat_json, chat_sse};
use futures::StreamExt;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

async fn ready(gw: &TestGateway) -> (u16, Value) {
    let res = gw.http.get(gw.url("/ready")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Polls `/ready` until its status is `want`.
async fn ready_becomes(gw: &TestGateway, want: u16) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = ready(gw).await;
        if status == want {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "/ready never answered {want}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn warmup_sends_one_short_request_per_deployment_before_ready() {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on(CHAT, chat_json("ok", Some((1, 1))));
    let gw = TestGateway::start(&format!(
        "[server]\nwarmup = true\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n[deployments.n]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    ))
    .await;
    ready_becomes(&gw, 200).await;
    let warmups: Vec<Value> = fake.requests().iter().filter(|r| r.path == CHAT).map(|r| r.json()).collect();
    let mut models: Vec<&str> = warmups.iter().map(|w| w["model"].as_str().unwrap()).collect();
    models.sort_unstable();
    assert_eq!(models, ["m", "n"], "one per deployment, before /ready said 200: {warmups:?}");
    assert!(warmups.iter().all(|w| w["max_tokens"] == 1), "{warmups:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn ready_is_503_while_every_queue_is_full() {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.push(CHAT, chat_sse(&DEFAULT_PIECES, None).stall_after(2));
    let gw = TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\nconcurrency = 1\nqueue_size = 0\n",
        fake.url("/v1")
    ))
    .await;
    ready_becomes(&gw, 200).await;
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let res = gw.http.post(gw.url(CHAT)).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    stream.next().await.unwrap().unwrap(); // the one slot is held by this stalled stream
    let v = ready_becomes(&gw, 503).await;
    assert!(v["reasons"].to_string().contains("queue is full"), "{v}");
    drop(stream); // the client leaves: the slot is freed
    ready_becomes(&gw, 200).await;
    gw.shutdown().await;
}
