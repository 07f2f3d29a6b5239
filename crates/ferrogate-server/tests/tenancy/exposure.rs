//! What the gateway shows to whom (issue 17, item 8): `/ready`'s details (upstream error texts,
//! backend names, queues) only to the master key; `/metrics` only to the master key; responses
//! carrying a key's plaintext are never cached; the dashboard page has a strict policy.

use reqwest::Method;
use serde_json::{Value, json};

use crate::env::{Env, MASTER};

pub async fn details_and_secrets_reach_only_operators(db: &ferrogate_testkit::TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let res =
        env.admin(Method::POST, "/admin/v1/keys").json(&json!({"tenant": "acme", "name": "k"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store", "the plaintext must not be cached");
    let created: Value = res.json().await.unwrap();
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap().to_owned());
    let res = env.admin(Method::POST, &format!("/admin/v1/keys/{id}/rotate")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["cache-control"].to_str().unwrap()), (200, "no-store"));
    let key = res.json::<Value>().await.unwrap()["key"].as_str().map_or(key, str::to_owned);

    // /ready: the status for everyone, the details for the master key only.
    let ready = |auth: Option<&str>| {
        let mut req = env.http.get(env.url("/ready"));
        if let Some(k) = auth {
            req = req.bearer_auth(k);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for who in [None, Some(key.as_str()), Some("fg-aaaaaaaa-wrong")] {
        let v = ready(who).await;
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{who:?} sees the status only: {v}");
        assert!(v["status"].is_string(), "{v}");
    }
    let v = ready(Some(MASTER)).await;
    assert!(v["deployments"]["m"]["backends"]["up"].is_object(), "the operator sees the details: {v}");

    // /metrics: not public, and not for tenants.
    assert_eq!(env.http.get(env.url("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(env.get(&key, "/metrics").await.status(), 401);
    assert_eq!(env.get(MASTER, "/metrics").await.status(), 200);

    // Failed client keys and failed master keys have their own budgets (100 per minute here).
    assert_eq!(env.get(&key, "/v1/models").await.status(), 200, "cached before the attack");
    for _ in 0..100 {
        assert_eq!(env.get("fg-aaaaaaaa-guess", "/v1/models").await.status(), 401);
    }
    assert_eq!(env.get("fg-aaaaaaaa-guess", "/v1/models").await.status(), 429);
    assert_eq!(env.admin_json(Method::GET, "/admin/v1/tenants", None).await.0, 200, "the operator is not locked out");
    // (Three failed master-key attempts above already: /ready with wrong keys, /metrics.)
    let mut statuses = Vec::new();
    while statuses.last() != Some(&429) && statuses.len() <= 100 {
        statuses.push(env.get("wrong-master", "/admin/v1/tenants").await.status().as_u16());
    }
    assert_eq!((statuses.len(), statuses.iter().filter(|&&s| s == 401).count()), (98, 97), "{statuses:?}");
    assert_eq!(env.get(&key, "/v1/models").await.status(), 200, "valid client keys still pass");

    let page = env.http.get(env.url("/dashboard")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    env.gw.shutdown().await;
}
