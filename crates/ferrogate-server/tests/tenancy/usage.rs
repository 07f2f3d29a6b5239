//! Usage reports: the admin's (any tenant, grouped, JSON or CSV) and a client key's own
//! (`GET /v1/usage`), which never shows another tenant's data — probes get 404.

use std::time::Duration;

use ferrogate_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};

use crate::env::{Env, assert_error, chat};

pub async fn usage_reports_and_cross_tenant_probes(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    let acme = env.tenant("acme", json!({"tokens_per_day": 1000})).await;
    let globex = env.tenant("globex", json!({})).await;
    let both = json!({"scopes": {"endpoints": ["inference", "usage-read"]}, "limits": {"tokens_per_month": 500}});
    let (reader, acme_key) = env.key("acme", both.clone()).await;
    let (worker, worker_key) = env.key("acme", json!({})).await;
    let (globex_rec, globex_key) = env.key("globex", both).await;
    for key in [&acme_key, &worker_key, &worker_key, &globex_key] {
        assert_eq!(env.chat(key, &chat("m", 5)).await.status(), 200);
    }
    assert_eq!(db.ledger_with(4, Duration::from_secs(5)).await.len(), 4);

    // Admin: every tenant, grouped as asked, with readable labels.
    let (s, v) = env.admin_json(Method::GET, "/admin/v1/usage?group_by=tenant", None).await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{v}");
    let acme_row = data.iter().find(|r| r["group"] == acme["id"]).unwrap();
    assert_eq!((acme_row["label"].as_str(), acme_row["requests"].as_u64()), (Some("acme"), Some(3)));
    assert_eq!((acme_row["prompt_tokens"].as_u64(), acme_row["total_tokens"].as_u64()), (Some(15), Some(27)));
    let (_, v) = env.admin_json(Method::GET, "/admin/v1/usage?group_by=key&tenant=globex", None).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["data"][0]["label"].as_str().unwrap().starts_with(globex_rec["prefix"].as_str().unwrap()), "{v}");
    for g in ["model", "backend", "hour", "day"] {
        let (s, v) = env.admin_json(Method::GET, &format!("/admin/v1/usage?group_by={g}"), None).await;
        assert_eq!((s, v["data"].as_array().map(Vec::len)), (200, Some(1)), "{g}: {v}");
        assert_eq!(v["data"][0]["requests"], 4, "{g}: {v}");
    }
    let csv = env.admin(Method::GET, "/admin/v1/usage?group_by=key&format=csv").send().await.unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("group,label,requests,"), "{csv}");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let (s, v) = env.admin_json(Method::GET, "/admin/v1/usage?group_by=planet", None).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("group_by")), "{v}");
    let res = env.admin(Method::GET, "/admin/v1/usage?from=2030-01-01&to=2020-01-01").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let (_, v) = env.admin_json(Method::GET, "/admin/v1/usage?from=2000-01-01&to=2000-01-02", None).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0), "an empty window: {v}");

    // A client sees its own tenant only, and its remaining budgets.
    let mine: Value = env.get(&acme_key, "/v1/usage?group_by=key").await.json().await.unwrap();
    assert_eq!(mine["tenant"]["name"], "acme");
    assert_eq!(mine["data"].as_array().unwrap().len(), 2, "{mine}");
    assert!(!mine.to_string().contains(globex["id"].as_str().unwrap()), "{mine}");
    let budgets = &mine["budgets"];
    assert_eq!(budgets["tenant"][0]["window"], "day");
    assert_eq!((budgets["tenant"][0]["limit"].as_u64(), budgets["tenant"][0]["used"].as_u64()), (Some(1000), Some(27)));
    assert_eq!(budgets["tenant"][0]["remaining"], 973);
    assert_eq!((budgets["key"][0]["window"].as_str(), budgets["key"][0]["used"].as_u64()), (Some("month"), Some(9)));
    let worker_id = worker["id"].as_str().unwrap();
    let (s, v) = (200, env.get(&acme_key, &format!("/v1/usage?key={worker_id}")).await.json::<Value>().await.unwrap());
    assert_eq!((s, v["data"][0]["requests"].as_u64()), (200, Some(2)), "{v}");
    let csv = env.get(&acme_key, "/v1/usage?format=csv").await.text().await.unwrap();
    assert!(csv.starts_with("group,label,") && !csv.contains(globex["id"].as_str().unwrap()), "{csv}");

    // Cross-tenant probes: 404, never data — by key id, tenant id and tenant name, both ways.
    let probes = [
        (&acme_key, format!("/v1/usage?key={}", globex_rec["id"].as_str().unwrap())),
        (&acme_key, format!("/v1/usage?tenant={}", globex["id"].as_str().unwrap())),
        (&acme_key, "/v1/usage?tenant=globex".to_owned()),
        (&acme_key, "/v1/usage?key=no-such-key".to_owned()),
        (&globex_key, format!("/v1/usage?key={worker_id}")),
        (&globex_key, format!("/v1/usage?key={}&group_by=key", reader["id"].as_str().unwrap())),
        (&globex_key, "/v1/usage?tenant=acme&format=csv".to_owned()),
    ];
    for (key, path) in probes {
        let v = assert_error(env.get(key, &path).await, 404, "not_found").await;
        assert!(!v.to_string().contains("requests"), "{path}: {v}");
    }
    // Client keys get nothing from the admin API, whatever the route.
    let key_path = format!("/admin/v1/keys/{worker_id}");
    let tenant_path = format!("/admin/v1/tenants/{}", acme["id"].as_str().unwrap());
    for path in ["/admin/v1/keys", "/admin/v1/tenants", "/admin/v1/usage", key_path.as_str(), tenant_path.as_str()] {
        for key in [&acme_key, &globex_key] {
            let v = assert_error(env.get(key, path).await, 401, "invalid_api_key").await;
            assert!(!v.to_string().contains(worker_id), "{path}: {v}");
        }
    }
    let res = env.http.post(env.url(&format!("{key_path}/revoke"))).bearer_auth(&globex_key).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(env.chat(&worker_key, &chat("m", 5)).await.status(), 200, "a failed probe changes nothing");
    env.gw.shutdown().await;
}
