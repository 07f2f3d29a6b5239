//! Engine-aware routing through the gateway over real HTTP on 127.0.0.1 (issue 22 item 4): two
//! OpenAI-compatible upstreams (the test kit's fake) that also serve llama.cpp server's
//! `/metrics` — the text captured from a real `llama-server --metrics` run, with its queue
//! gauges set per test —, scraped every 50 ms. Checks: each tenant's long system prompt sticks
//! to one backend (`x-ferrogate-backend-route: …reason=prefix`), a stored conversation's next
//! turn goes where its history was served, a busy engine's `/metrics` steers new prompts away
//! and trips the guard for a prompt it holds, and round robin / P2C say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use ferrogate_testkit::gateway::TestGateway;
use ferrogate_testkit::upstream::{FakeUpstream, Reply};
use serde_json::{Value, json};

/// `llama-server --metrics` output captured from a real run (scripts/bench-routing.sh's engine).
const LLAMA_METRICS: &str = include_str!("../../ferrogate-backends/tests/data/llama-server-metrics.txt");

/// The captured text with its queue gauges set to `processing` and `deferred`.
fn llama_metrics(processing: u32, deferred: u32) -> String {
    LLAMA_METRICS
        .lines()
        .map(|l| match l.split_whitespace().next() {
            Some("llamacpp:requests_processing") => format!("llamacpp:requests_processing {processing}"),
            Some("llamacpp:requests_deferred") => format!("llamacpp:requests_deferred {deferred}"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn engine() -> FakeUpstream {
    let fake = FakeUpstream::openai().await.unwrap();
    fake.on("/metrics", Reply::text(200, llama_metrics(0, 0)));
    fake
}

struct Fleet {
    gw: TestGateway,
    a: FakeUpstream,
    b: FakeUpstream,
    _dir: tempfile::TempDir,
}

async fn fleet() -> Fleet {
    let (a, b) = (engine().await, engine().await);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [backends.b]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.chat]\nbackends = [\"a\", \"b\"]\nupstream_model = \"fake-model\"\nrouting = \"prefix\"\n\
         [deployments.rr]\nbackends = [\"a\", \"b\"]\nupstream_model = \"fake-model\"\nrouting = \"round_robin\"\n\
         [deployments.p2c]\nbackends = [\"a\", \"b\"]\nupstream_model = \"fake-model\"\n\
         [routing]\nscrape_interval_ms = 50\n\
         [conversations]\ndatabase_url = \"sqlite://{}/conv.db\"\n",
        a.url("/v1"),
        b.url("/v1"),
        dir.path().display(),
    );
    let gw = TestGateway::start(&toml).await;
    Fleet { gw, a, b, _dir: dir }
}

fn system_prompt(tenant: usize) -> String {
    format!("You are the assistant of tenant {tenant}. {}", "Answer briefly and cite the handbook. ".repeat(60))
}

struct Routed {
    backend: String,
    route: String,
    body: Value,
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> Routed {
    let res = gw.post_json(path, &body).await;
    assert_eq!(res.status(), 200);
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (backend, route) = (h("x-ferrogate-backend"), h("x-ferrogate-backend-route"));
    Routed { backend, route, body: res.json().await.unwrap() }
}

async fn ask(gw: &TestGateway, model: &str, tenant: usize, question: &str) -> Routed {
    let messages = json!([{"role": "system", "content": system_prompt(tenant)}, {"role": "user", "content": question}]);
    post(gw, "/v1/chat/completions", json!({"model": model, "messages": messages, "max_tokens": 8})).await
}

/// Waits until the scrape has certainly run again (a few intervals).
async fn scraped() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn each_tenant_sticks_to_the_backend_holding_its_prefix() {
    let f = fleet().await;
    let mut home = HashMap::new();
    for t in 0..8 {
        let r = ask(&f.gw, "chat", t, "first question").await;
        assert!(r.route.starts_with(&format!("backend={}; reason=place", r.backend)), "{}", r.route);
        home.insert(t, r.backend);
    }
    let on_a = home.values().filter(|b| b.as_str() == "a").count();
    assert_eq!(on_a, 4, "eight tenants placed four and four: {home:?}");
    for round in 0..3 {
        for t in 0..8 {
            let r = ask(&f.gw, "chat", t, &format!("question {round} of tenant {t}")).await;
            assert_eq!(r.backend, home[&t], "tenant {t} round {round}");
            assert_eq!(r.route, format!("backend={}; reason=prefix; match=1.00", home[&t]));
        }
    }
    // The upstreams saw it too: every request of a tenant reached one of them only.
    for (t, backend) in &home {
        let marker = format!("tenant {t}.");
        let on = |u: &FakeUpstream| {
            u.requests().iter().filter(|r| String::from_utf8_lossy(&r.body).contains(&marker)).count()
        };
        let (na, nb) = (on(&f.a), on(&f.b));
        assert_eq!((na.min(nb), na.max(nb)), (0, 4), "tenant {t} on {backend}: a {na}, b {nb}");
    }
}

/// The client sends only each new question; the gateway puts the stored history in front of it,
/// so the prompt starts with the first turn's long document and follows it.
#[tokio::test]
async fn a_stored_conversation_follows_the_backend_that_served_its_history() {
    let f = fleet().await;
    for conv in 0..4 {
        let document = format!("Document {conv}: {}", "The quarterly report lists revenue by region. ".repeat(40));
        let first = post(&f.gw, "/v1/responses", json!({"model": "chat", "input": document, "store": true})).await;
        let mut previous = first.body["id"].as_str().unwrap().to_owned();
        for turn in 0..3 {
            let next = post(
                &f.gw,
                "/v1/responses",
                json!({"model": "chat", "previous_response_id": previous, "input": format!("and turn {turn}?"), "store": true}),
            )
            .await;
            assert_eq!(next.backend, first.backend, "conversation {conv} turn {turn}");
            assert!(next.route.contains("reason=prefix"), "{}", next.route);
            previous = next.body["id"].as_str().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn a_busy_engine_steers_new_prompts_away_and_trips_the_guard() {
    let f = fleet().await;
    // b's llama-server reports 4 requests processing and 9 deferred.
    f.b.on("/metrics", Reply::text(200, llama_metrics(4, 9)));
    scraped().await;
    for t in 0..6 {
        let r = ask(&f.gw, "chat", t, "hi").await;
        assert_eq!((r.backend.as_str(), r.route.contains("reason=place")), ("a", true), "tenant {t}: {}", r.route);
    }
    // Now a is the busy one: tenant 0's prefix lives there, but the guard sends it to b.
    f.b.on("/metrics", Reply::text(200, llama_metrics(0, 0)));
    f.a.on("/metrics", Reply::text(200, llama_metrics(4, 9)));
    scraped().await;
    let r = ask(&f.gw, "chat", 0, "hi again").await;
    assert_eq!(r.route, "backend=b; reason=guard; match=0.00");
    // Load back to normal: the prefix is now remembered on b, where it was served last.
    f.a.on("/metrics", Reply::text(200, llama_metrics(0, 0)));
    scraped().await;
    let r = ask(&f.gw, "chat", 0, "and again").await;
    assert_eq!(r.route, "backend=b; reason=prefix; match=1.00");
}

#[tokio::test]
async fn round_robin_alternates_and_p2c_stays_the_default() {
    let f = fleet().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = ask(&f.gw, "rr", 0, "hi").await;
        assert!(r.route.ends_with("reason=round_robin; match=0.00"), "{}", r.route);
        seen.push(r.backend);
    }
    assert_ne!(seen[0], seen[1]);
    assert_eq!((&seen[0], &seen[1]), (&seen[2], &seen[3]));
    let r = ask(&f.gw, "p2c", 0, "hi").await;
    assert_eq!(r.route, format!("backend={}; reason=p2c; match=0.00", r.backend));
}
