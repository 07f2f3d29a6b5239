//! Rate limits across real `ferrogate serve` processes sharing Redis: 200 concurrent requests
//! spread over two gateways against a limit of 50 per minute admit exactly 50.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ferrogate_testkit::redis::{shared_url, unique_prefix};
use ferrogate_testkit::upstream::FakeUpstream;
use serde_json::json;

mod common;
use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_per_minute_hold_across_two_processes_sharing_redis() {
    let fake = FakeUpstream::openai().await.unwrap();
    let config = format!(
        "[limits]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nredis_timeout_ms = 2000\n\
         [[limits.rules]]\nname = \"fifty\"\nscope = \"global\"\nrequests_per_minute = 50\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        shared_url(),
        unique_prefix("processes"),
        fake.url("/v1")
    );
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(dir.path(), "a", &config).await;
    let b = Server::start(dir.path(), "b", &config).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let url = format!("{}/v1/chat/completions", if i % 2 == 0 { &a.url } else { &b.url });
            let (http, body) = (http.clone(), body.clone());
            tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (50, 150), "{statuses:?}");
    let served = fake.requests().iter().filter(|r| r.path == "/v1/chat/completions").count();
    assert_eq!(served, 50);
}
