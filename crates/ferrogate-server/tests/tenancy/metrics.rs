//! Metrics with tenancy on: budget and rate refusals counted by scope, requests by error type,
//! tokens by tenant (with `metrics.tenant_labels`), and the usage ledger's rows — exact counts
//! after a known sequence of requests.

use std::collections::HashMap;
use std::time::Duration;

use ferrogate_testkit::TestDatabase;
use serde_json::json;

use crate::env::{Env, assert_error, chat};

async fn scrape(env: &Env) -> HashMap<String, f64> {
    let text = env.admin(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse::<f64>().unwrap())))
        .collect()
}

/// Polls until `series` equals `want` (ledger rows are written in batches).
async fn wait_for(env: &Env, series: &str, want: f64) -> HashMap<String, f64> {
    for _ in 0..100 {
        let s = scrape(env).await;
        if s.get(series) == Some(&want) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never became {want}: {:?}", scrape(env).await.get(series));
}

pub async fn refusals_and_ledger_rows_are_counted_exactly(db: &TestDatabase) {
    let env = Env::start(db, "[metrics]\ntenant_labels = true\n").await;
    env.tenant("acme", json!({})).await;
    let (_, budget) = env.key("acme", json!({"limits": {"tokens_per_day": 20}})).await;
    let (_, rate) = env.key("acme", json!({"limits": {"requests_per_minute": 1}})).await;
    for _ in 0..3 {
        assert_eq!(env.chat(&budget, &chat("m", 5)).await.status(), 200);
    }
    for _ in 0..2 {
        assert_error(env.chat(&budget, &chat("m", 5)).await, 429, "insufficient_quota").await;
    }
    assert_eq!(env.chat(&rate, &chat("m", 5)).await.status(), 200);
    assert_error(env.chat(&rate, &chat("m", 5)).await, 429, "rate_limit_exceeded").await;
    assert_error(env.chat(&rate, &chat("nope", 5)).await, 404, "model_not_found").await;

    // 7 metered requests (4 served, 3 refused before the backend) + the 404: 8 ledger rows.
    let s = wait_for(&env, r#"ferrogate_ledger_rows_total{outcome="written"}"#, 8.0).await;
    assert_eq!(s[r#"ferrogate_ledger_rows_total{outcome="accepted"}"#], 8.0);
    assert_eq!(s[r#"ferrogate_ledger_rows_total{outcome="dropped"}"#], 0.0);
    assert_eq!(s["ferrogate_ledger_pending_rows"], 0.0);
    assert_eq!(s["ferrogate_ledger_write_lag_seconds"], 0.0);
    assert_eq!(s[r#"ferrogate_budget_rejections_total{scope="key"}"#], 2.0);
    assert_eq!(s[r#"ferrogate_budget_rejections_total{scope="tenant"}"#], 0.0);
    assert_eq!(s[r#"ferrogate_rate_limit_rejections_total{scope="key"}"#], 1.0);
    let req = |status: &str, error: &str| {
        format!(
            r#"ferrogate_requests_total{{endpoint="chat",deployment="m",status_class="{status}",error_type="{error}",tenant="acme"}}"#
        )
    };
    assert_eq!(s[&req("2xx", "none")], 4.0);
    assert_eq!(s[&req("4xx", "insufficient_quota")], 2.0);
    assert_eq!(s[&req("4xx", "rate_limit_exceeded")], 1.0);
    let unknown = r#"ferrogate_requests_total{endpoint="chat",deployment="unknown",status_class="4xx",error_type="model_not_found",tenant="acme"}"#;
    assert_eq!(s[unknown], 1.0);
    // The fake upstream reports 5 + 4 tokens per request.
    assert_eq!(s[r#"ferrogate_tokens_total{deployment="m",token_type="completion",tenant="acme"}"#], 16.0);
    env.gw.shutdown().await;
}
