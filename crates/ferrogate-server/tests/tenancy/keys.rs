//! Key lifecycle and authentication: create, use, rotate, expire, revoke, delete; where keys are
//! needed and which; the failed-attempt limit; the cache keeping the database off the hot path.

use std::sync::atomic::Ordering;

use ferrogate_core::tenancy::time::Clock as _;
use ferrogate_testkit::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};

use crate::env::{CHAT, Env, MASTER, assert_error, chat, status_json};

pub async fn key_lifecycle(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    let tenant = env.tenant("acme", json!({})).await;
    assert_eq!(tenant["object"], "tenant");
    let (record, key) = env.key("acme", json!({"name": "ci"})).await;
    let id = record["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(record["prefix"].as_str().unwrap()) && key.len() == 55, "{record}");
    assert_eq!((record["status"].as_str(), record["tenant_id"].as_str()), (Some("active"), tenant["id"].as_str()));

    // Both header forms work.
    assert_eq!(env.chat(&key, &chat("m", 8)).await.status(), 200);
    let res = env.http.post(env.url(CHAT)).header("x-api-key", &key).json(&chat("m", 8)).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Lists and gets never show the secret.
    for path in ["/admin/v1/keys", &format!("/admin/v1/keys/{id}"), "/admin/v1/keys?tenant=acme"] {
        let (s, v) = env.admin_json(Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(!text.contains(&key[12..]) && !text.contains("digest"), "{path}: {text}");
        assert!(text.contains(record["prefix"].as_str().unwrap()));
    }

    // Rotation: same id and prefix, new secret; the old one stops at once.
    let (s, rotated) = env.admin_json(Method::POST, &format!("/admin/v1/keys/{id}/rotate"), None).await;
    assert_eq!(s, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!((rotated["id"].as_str(), rotated["prefix"].as_str()), (Some(id.as_str()), record["prefix"].as_str()));
    assert_error(env.chat(&key, &chat("m", 8)).await, 401, "invalid_api_key").await;
    assert_eq!(env.chat(&new_key, &chat("m", 8)).await.status(), 200);

    // Expiry is checked on every use, also for cached keys.
    let soon = env.clock.now_ms() + 1_000;
    let (s, v) =
        env.admin_json(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(json!({"expires_at_ms": soon}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(env.chat(&new_key, &chat("m", 8)).await.status(), 200);
    env.clock.advance(2_000);
    let v = assert_error(env.chat(&new_key, &chat("m", 8)).await, 401, "invalid_api_key").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
    let (_, v) = env.admin_json(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!(v["status"], "expired");
    let (s, _) =
        env.admin_json(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(json!({"expires_at_ms": null}))).await;
    assert_eq!(s, 200);
    assert_eq!(env.chat(&new_key, &chat("m", 8)).await.status(), 200, "expiry removed");

    // Revocation is final.
    let (s, v) = env.admin_json(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")), "{v}");
    let v = assert_error(env.chat(&new_key, &chat("m", 8)).await, 401, "invalid_api_key").await;
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"), "{v}");
    let (s, v) = env.admin_json(Method::POST, &format!("/admin/v1/keys/{id}/rotate"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");

    // A tenant with an active key cannot be deleted; once its keys are revoked it can.
    let (other, _) = env.key("acme", json!({})).await;
    let (s, v) = env.admin_json(Method::DELETE, "/admin/v1/tenants/acme", None).await;
    assert_eq!(s, 409, "{v}");
    env.admin_json(Method::POST, &format!("/admin/v1/keys/{}/revoke", other["id"].as_str().unwrap()), None).await;
    let res = env.admin(Method::DELETE, "/admin/v1/tenants/acme").send().await.unwrap();
    assert_eq!(res.status(), 204);
    let (s, v) = env.admin_json(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    env.gw.shutdown().await;
}

pub async fn tenant_admin_validates_and_renames(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    let t = env.tenant("acme", json!({"tokens_per_day": 100})).await;
    let (s, v) = env.admin_json(Method::POST, "/admin/v1/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("conflict")), "{v}");
    let (s, v) = env.admin_json(Method::POST, "/admin/v1/tenants", Some(json!({"name": "has space"}))).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = env.admin_json(Method::POST, "/admin/v1/tenants", Some(json!({"name": "x", "limitz": {}}))).await;
    assert_eq!((s, v["error"]["param"].as_str()), (400, Some("limitz")), "{v}");
    let id = t["id"].as_str().unwrap();
    let (s, v) =
        env.admin_json(Method::PATCH, &format!("/admin/v1/tenants/{id}"), Some(json!({"name": "acme-corp"}))).await;
    assert_eq!((s, v["name"].as_str(), v["limits"]["tokens_per_day"].as_u64()), (200, Some("acme-corp"), Some(100)));
    let (s, v) = env.admin_json(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!((s, v["data"].as_array().unwrap().len()), (200, 1), "{v}");
    let (s, v) = env.admin_json(Method::POST, "/admin/v1/keys", Some(json!({"tenant": "nobody"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    env.gw.shutdown().await;
}

pub async fn auth_is_required_everywhere_but_the_allowlist(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({})).await;
    for path in ["/health", "/ready", "/admin/v1/openapi.json"] {
        let res = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    let doc: Value = env.http.get(env.url("/admin/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/admin/v1/keys/{id}/revoke"].is_object(), "{doc}");
    for path in ["/v1/models", "/v1/usage", "/admin/v1/tenants", "/nope"] {
        assert_error(env.http.get(env.url(path)).send().await.unwrap(), 401, "invalid_api_key").await;
    }
    assert_error(env.http.post(env.url(CHAT)).json(&chat("m", 4)).send().await.unwrap(), 401, "invalid_api_key").await;
    // The master key is for the admin API only, client keys for everything else.
    assert_error(env.chat(MASTER, &chat("m", 4)).await, 401, "invalid_api_key").await;
    for path in ["/admin/v1/tenants", "/admin/v1/keys", "/admin/v1/usage"] {
        assert_error(env.get(&key, path).await, 401, "invalid_api_key").await;
    }
    assert_error(env.get("wrong-master-key-000000", "/admin/v1/keys").await, 401, "invalid_api_key").await;
    // A wrong key shaped like a real one, and garbage.
    let forged = format!("{}{}", &key[..12], "A".repeat(43));
    assert_error(env.chat(&forged, &chat("m", 4)).await, 401, "invalid_api_key").await;
    assert_error(env.chat("not a key", &chat("m", 4)).await, 401, "invalid_api_key").await;
    env.gw.shutdown().await;
}

pub async fn failed_attempts_are_limited_per_address(db: &TestDatabase) {
    let env = Env::start_with(db, "auth_failures_per_minute = 5", "").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({})).await;
    assert_eq!(env.chat(&key, &chat("m", 4)).await.status(), 200, "cached before the attack");
    let misses = || env.tenancy().keys.misses.load(Ordering::Relaxed);
    let before = misses();
    for i in 0..5 {
        let guess = format!("fg-aaaaaaa{}-{}", i + 2, "B".repeat(43));
        assert_error(env.chat(&guess, &chat("m", 4)).await, 401, "invalid_api_key").await;
    }
    for _ in 0..20 {
        let guess = format!("fg-bbbbbbbb-{}", "C".repeat(43));
        let res = env.chat(&guess, &chat("m", 4)).await;
        let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{retry:?}");
        assert_error(res, 429, "too_many_auth_failures").await;
    }
    assert_eq!(misses() - before, 5, "blocked guesses never reach the database");
    // The master key has a counter of its own (issue 17): a client locked out for guessing
    // tenant keys does not lock the operator out of the admin API, and vice versa.
    assert_eq!(env.admin_json(reqwest::Method::GET, "/admin/v1/keys", None).await.0, 200);
    for _ in 0..5 {
        assert_eq!(env.get("wrong-master-key-000000", "/admin/v1/keys").await.status(), 401);
    }
    let res = env.get("wrong-master-key-000000", "/admin/v1/keys").await;
    assert_eq!(res.status(), 429, "the master key is guarded by a limit of the same size");
    assert_eq!(env.chat(&key, &chat("m", 4)).await.status(), 200, "a cached valid key still works");
    env.gw.shutdown().await;
}

pub async fn steady_state_needs_no_database(db: &TestDatabase) {
    let env = Env::start(db, "").await;
    env.tenant("acme", json!({})).await;
    let (_, key) = env.key("acme", json!({})).await;
    for _ in 0..20 {
        let (s, v) = status_json(env.chat(&key, &chat("m", 4)).await).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(env.tenancy().keys.misses.load(Ordering::Relaxed), 1, "one lookup, then the cache");
    env.gw.shutdown().await;
}

pub async fn static_keys_still_work_and_are_metered(db: &TestDatabase) {
    let env = Env::start(db, "[server]\napi_keys = [\"sk-static-key-123\"]\n").await;
    let res = env
        .http
        .post(env.url(CHAT))
        .bearer_auth("sk-static-key-123")
        .header("x-request-id", "static-1")
        .json(&chat("m", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rows = db.ledger_with(1, std::time::Duration::from_secs(5)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].request_id.as_str(), rows[0].tenant_id.as_deref(), rows[0].prompt_tokens),
        ("static-1", None, 5)
    );
    assert_eq!(env.get("sk-static-key-123", "/v1/usage").await.status(), 403, "usage is per tenant");
    env.gw.shutdown().await;
}
