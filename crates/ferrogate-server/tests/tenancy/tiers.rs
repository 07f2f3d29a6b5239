//! Tiered routing with tenancy: tenant pins, and key scopes checked against `auto` or the tier
//! chosen.

use ferrogate_testkit::TestDatabase;
use serde_json::{Value, json};

use crate::env::{Env, assert_error, chat};

const TIERS: &str = "[tiers]\nsmall = \"m\"\nlarge = \"other\"\n[tiers.tenants]\nbig = \"large\"\n";

async fn routed(env: &Env, key: &str, tier: Option<&str>) -> (u16, String, Value) {
    let mut req = env.http.post(env.url("/v1/chat/completions")).bearer_auth(key).json(&chat("auto", 4));
    if let Some(t) = tier {
        req = req.header("x-ferrogate-tier", t);
    }
    let res = req.send().await.unwrap();
    let route = res.headers().get("x-ferrogate-route").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (res.status().as_u16(), route, res.json().await.unwrap())
}

pub async fn tiers_pin_tenants_and_respect_scopes(db: &TestDatabase) {
    let env = Env::start(db, TIERS).await;
    env.tenant("acme", json!({})).await;
    env.tenant("big", json!({})).await;
    let (_, acme) = env.key("acme", json!({})).await;
    let (_, big) = env.key("big", json!({})).await;
    let (status, route, v) = routed(&env, &acme, None).await;
    assert_eq!((status, v["model"].as_str()), (200, Some("m")), "{v}");
    assert_eq!(route, "tier=small score=0.00");
    let (status, route, v) = routed(&env, &big, None).await;
    assert_eq!((status, v["model"].as_str()), (200, Some("other")), "{v}");
    assert_eq!(route, "tier=large score=0.00 pinned=tenant");
    // The header pin comes first.
    let (_, route, _) = routed(&env, &big, Some("small")).await;
    assert_eq!(route, "tier=small score=0.00 pinned=header");

    // A key scoped to `auto` may use whichever tier serves; a key scoped to `m` only the small one.
    let (_, only_auto) = env.key("acme", json!({"scopes": {"models": ["auto"]}})).await;
    assert_eq!(routed(&env, &only_auto, Some("large")).await.0, 200);
    let (_, only_m) = env.key("acme", json!({"scopes": {"models": ["m"]}})).await;
    assert_eq!(routed(&env, &only_m, None).await.0, 200);
    let res = env.http.post(env.url("/v1/chat/completions")).bearer_auth(&only_m).header("x-ferrogate-tier", "large");
    let v = assert_error(res.json(&chat("auto", 4)).send().await.unwrap(), 403, "model_not_allowed").await;
    // Names the tier's deployment it may not use, not `auto` (which it never asked to be limited on).
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("may not use the model 'other'") && message.contains("'auto' resolved to"), "{v}");
    assert!(message.ends_with("it may use: m"), "{v}");

    // Usage by model names the deployments behind `auto`.
    let auto_row = async || {
        let (_, v) = env.admin_json(reqwest::Method::GET, "/admin/v1/usage?group_by=model", None).await;
        v["data"].as_array().unwrap().iter().find(|r| r["group"] == "auto").cloned()
    };
    let mut row = auto_row().await;
    for _ in 0..50 {
        if row.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        row = auto_row().await;
    }
    let row = row.expect("auto's usage row");
    assert_eq!(row["label"], "served by m (small) or other (large)", "{row}");
    env.gw.shutdown().await;
}
