//! Tiered routing end to end with the two real embedded models: the virtual model `auto` sends a
//! one-line greeting to the small tier (SmolLM2) and a long multi-step reasoning/code prompt to
//! the large tier (Gemma 3), explains the decision in `x-ferrogate-route`, and honours the
//! `x-ferrogate-tier` pin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::gateway::{GEMMA3, SMOLLM2};
use ferrogate_testkit::{TestGateway, model_path};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

async fn gateway() -> TestGateway {
    let engine = |name: &str, file: &str| {
        format!(
            "[backends.{name}]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = 1\nctx_per_seq = 1024\nthreads = 1\n\
             [deployments.{name}]\nbackends = [\"{name}\"]\n",
            model_path(file).display()
        )
    };
    let toml = format!(
        "[tiers]\nsmall = \"smollm2\"\nlarge = \"gemma3\"\n{}{}",
        engine("smollm2", SMOLLM2),
        engine("gemma3", GEMMA3)
    );
    let gw = TestGateway::start(&toml).await;
    gw.wait_ready(Duration::from_secs(120)).await;
    gw
}

const REASONING: &str = "You are reviewing a concurrency bug. Analyze the following Rust code step by step. \
First, explain why the two threads can deadlock when they transfer money in opposite directions. \
Then compare two fixes — a global lock order by account id, and try_lock with backoff — and justify \
which one you would choose, considering the trade-off between throughput and fairness. Finally, \
derive the worst-case number of retries of the second fix.\n\
```rust\n\
fn transfer(from: &Mutex<u64>, to: &Mutex<u64>, amount: u64) {\n    \
let mut a = from.lock().unwrap();\n    \
let mut b = to.lock().unwrap();\n    \
*a -= amount;\n    \
*b += amount;\n\
}\n\
```";

struct Routed {
    status: u16,
    route: String,
    backend: String,
    body: Value,
}

async fn ask(gw: &TestGateway, content: &str, tier: Option<&str>) -> Routed {
    let body = json!({
        "model": "auto",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
    });
    let mut req = gw.http.post(gw.url(CHAT)).json(&body);
    if let Some(t) = tier {
        req = req.header("x-ferrogate-tier", t);
    }
    let res = req.send().await.unwrap();
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let (status, route, backend) = (res.status().as_u16(), h("x-ferrogate-route"), h("x-ferrogate-backend"));
    Routed { status, route, backend, body: res.json().await.unwrap() }
}

/// The score in `tier=… score=0.21`.
fn score(route: &str) -> f64 {
    route.split_whitespace().find_map(|p| p.strip_prefix("score=")).unwrap().parse().unwrap()
}

#[tokio::test]
async fn auto_routes_a_greeting_small_and_multi_step_reasoning_over_code_large() {
    let gw = gateway().await;
    let models: Value = gw.http.get(gw.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"auto") && ids.contains(&"smollm2") && ids.contains(&"gemma3"), "{ids:?}");
    let small = ask(&gw, "Hi there!", None).await;
    assert_eq!(small.status, 200, "{}", small.body);
    assert!(small.route.starts_with("tier=small score="), "{}", small.route);
    assert_eq!(small.backend, "smollm2");
    assert_eq!(small.body["model"], "smollm2", "the tier chosen is the model reported");
    assert!(small.body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let large = ask(&gw, REASONING, None).await;
    assert_eq!(large.status, 200, "{}", large.body);
    assert!(large.route.starts_with("tier=large score="), "{}", large.route);
    assert_eq!(large.backend, "gemma3");
    assert_eq!(large.body["model"], "gemma3");
    assert!(large.body["usage"]["prompt_tokens"].as_u64().unwrap() > 100);
    assert!(score(&large.route) > score(&small.route) + 0.3, "{} vs {}", large.route, small.route);

    // A pin wins over the score, and says so.
    let pinned = ask(&gw, "Hi there!", Some("large")).await;
    assert_eq!((pinned.status, pinned.backend.as_str()), (200, "gemma3"));
    assert!(pinned.route.starts_with("tier=large") && pinned.route.ends_with("pinned=header"), "{}", pinned.route);
    let bad = ask(&gw, "Hi there!", Some("medium")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "x-ferrogate-tier");
    gw.shutdown().await;
}
