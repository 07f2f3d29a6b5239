use std::collections::BTreeSet;
use std::time::Duration;

use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{
    EndpointGroup, KeyId, KeyStatus, KeyStore, KeyUpdate, Limits, NewKeySpec, NewTenant, Scopes, StoreError, Tenant,
    TenantId, TenantStore, TenantUpdate, UsageRecord, UsageStore, generate_key, parse_key,
};
use ferrogate_store::Store;

use crate::harness::{TestDb, options};

async fn tenant(db: &TestDb, name: &str) -> Tenant {
    db.store.create_tenant(NewTenant { name: name.into(), limits: Limits::default() }).await.unwrap()
}

fn all_limits(seed: u32) -> Limits {
    Limits {
        requests_per_minute: Some(seed),
        tokens_per_minute: Some(u64::from(seed) * 1000),
        max_concurrent_requests: Some(seed + 1),
        max_tokens_per_request: Some(seed + 2),
        tokens_per_day: Some(u64::from(seed) * 100_000),
        tokens_per_month: Some(u64::from(seed) * 3_000_000),
        usd_per_day: Some(f64::from(seed) / 4.0),
        usd_per_month: Some(f64::from(seed) * 7.25),
    }
}

pub async fn key_create_and_lookup_by_digest(db: &TestDb) {
    let s = &db.store;
    let t = tenant(db, "acme").await;
    let nk = s.create_key(NewKeySpec::new(t.id.clone(), "ci")).await.unwrap();
    let presented = nk.plaintext.expose_secret();
    let parsed = parse_key(presented).unwrap();
    assert_eq!(parsed.prefix(), nk.record.prefix);
    assert_eq!(nk.record.tenant_id, t.id);
    assert_eq!((nk.record.expires_at_ms, nk.record.revoked_at_ms), (None, None));

    let found = s.lookup_key(&parsed.digest()).await.unwrap().unwrap();
    assert_eq!(found.key, nk.record);
    assert_eq!(found.tenant, t);
    assert_eq!(found.key.status(now_ms()), KeyStatus::Active);

    let stranger = generate_key().unwrap();
    assert!(s.lookup_key(&stranger.digest).await.unwrap().is_none(), "an unknown key matches nothing");

    assert_eq!(s.get_key(&nk.record.id).await.unwrap(), Some(nk.record.clone()));
    let second = s.create_key(NewKeySpec::new(t.id.clone(), "laptop")).await.unwrap();
    assert_ne!(second.record.prefix, nk.record.prefix);
    let other = tenant(db, "other").await;
    let theirs = s.create_key(NewKeySpec::new(other.id.clone(), "theirs")).await.unwrap();
    assert_eq!(s.list_keys(Some(&t.id)).await.unwrap(), vec![nk.record.clone(), second.record.clone()]);
    assert_eq!(s.list_keys(Some(&other.id)).await.unwrap(), vec![theirs.record.clone()]);
    assert_eq!(s.list_keys(None).await.unwrap().len(), 3);

    let err = s.create_key(NewKeySpec::new(TenantId::generate(), "orphan")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "tenant", .. }), "{err}");
    let err = s.create_key(NewKeySpec::new(t.id.clone(), "")).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(s.get_key(&KeyId::generate()).await.unwrap(), None);
}

pub async fn key_plaintext_is_never_stored(db: &TestDb) {
    let s = &db.store;
    let t = tenant(db, "secretive").await;
    let created = s.create_key(NewKeySpec::new(t.id.clone(), "k")).await.unwrap();
    let rotated = s.rotate_key(&created.record.id).await.unwrap();
    let row = UsageRecord {
        id: UsageRecord::new_id(),
        request_id: "req-1".into(),
        tenant_id: Some(t.id.clone()),
        key_id: Some(created.record.id.clone()),
        endpoint: "chat.completions".into(),
        model_requested: "m".into(),
        model_served: None,
        backend: None,
        prompt_tokens: 1,
        cached_prompt_tokens: 0,
        completion_tokens: 1,
        latency_ms: 1,
        ttft_ms: None,
        http_status: 200,
        error_type: None,
        streamed: false,
        cancelled: false,
        cache_hit: false,
        created_at_ms: now_ms(),
    };
    s.insert_usage(&[row]).await.unwrap();

    let stored = db.everything_stored().await;
    // The scan sees the data: the digest and prefix are there...
    assert!(stored.contains(&rotated.plaintext.digest().to_hex()), "the scan must see the key rows");
    assert!(stored.contains(&created.record.prefix));
    // ...and neither key nor its secret part is, before or after rotation.
    for key in [&created.plaintext, &rotated.plaintext] {
        let whole = key.expose_secret();
        let secret = &whole[12..];
        assert!(!stored.contains(whole), "plaintext key found in the {:?} database", db.kind());
        assert!(!stored.contains(secret), "key secret found in the {:?} database", db.kind());
    }
}

pub async fn lookup_reports_expired_and_revoked_keys(db: &TestDb) {
    let s = &db.store;
    let t = tenant(db, "t").await;
    let now = now_ms();
    let spec = |name: &str, expires| NewKeySpec { expires_at_ms: expires, ..NewKeySpec::new(t.id.clone(), name) };

    let expired = s.create_key(spec("expired", Some(now - 1_000))).await.unwrap();
    let found = s.lookup_key(&expired.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!(found.key.expires_at_ms, Some(now - 1_000));
    assert_eq!(found.key.status(now_ms()), KeyStatus::Expired);

    let later = s.create_key(spec("later", Some(now + 3_600_000))).await.unwrap();
    let found = s.lookup_key(&later.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!(found.key.status(now_ms()), KeyStatus::Active);

    let revoked = s.revoke_key(&later.record.id).await.unwrap();
    let at = revoked.revoked_at_ms.unwrap();
    assert!(at >= now);
    let found = s.lookup_key(&later.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!(found.key.status(now_ms()), KeyStatus::Revoked);
    assert_eq!(found.key.revoked_at_ms, Some(at));

    tokio::time::sleep(Duration::from_millis(3)).await;
    let again = s.revoke_key(&later.record.id).await.unwrap();
    assert_eq!(again.revoked_at_ms, Some(at), "revoking twice keeps the first time");
    let err = s.revoke_key(&KeyId::generate()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "key", .. }), "{err}");
}

pub async fn rotate_invalidates_the_old_secret(db: &TestDb) {
    let s = &db.store;
    let t = tenant(db, "t").await;
    let spec = NewKeySpec {
        scopes: Scopes { models: vec!["m".into()], ..Scopes::default() },
        ..NewKeySpec::new(t.id.clone(), "k")
    };
    let old = s.create_key(spec).await.unwrap();
    let new = s.rotate_key(&old.record.id).await.unwrap();

    assert_eq!(new.record.id, old.record.id);
    assert_eq!(new.record.prefix, old.record.prefix, "rotation keeps the visible prefix");
    assert_eq!(new.plaintext.prefix(), old.record.prefix);
    assert_eq!(new.record.scopes, old.record.scopes);
    assert_ne!(new.plaintext, old.plaintext);
    assert!(new.record.updated_at_ms >= old.record.updated_at_ms);

    assert!(s.lookup_key(&old.plaintext.digest()).await.unwrap().is_none(), "the old secret stopped working");
    let found = s.lookup_key(&new.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!(found.key, new.record);

    s.revoke_key(&old.record.id).await.unwrap();
    let err = s.rotate_key(&old.record.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = s.rotate_key(&KeyId::generate()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn scopes_and_limits_round_trip(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(NewTenant { name: "limited".into(), limits: all_limits(7) }).await.unwrap();
    assert_eq!(s.get_tenant(&t.id).await.unwrap().unwrap().limits, all_limits(7));

    let scopes =
        Scopes { models: vec!["llama".into(), "gemma".into()], endpoints: BTreeSet::from([EndpointGroup::UsageRead]) };
    let spec = NewKeySpec {
        tenant_id: t.id.clone(),
        name: "scoped — ünïcode".into(),
        scopes: scopes.clone(),
        limits: all_limits(3),
        expires_at_ms: Some(4_102_444_800_000),
    };
    let nk = s.create_key(spec).await.unwrap();
    let got = s.get_key(&nk.record.id).await.unwrap().unwrap();
    assert_eq!(got, nk.record);
    assert_eq!((&got.scopes, &got.limits, got.name.as_str()), (&scopes, &all_limits(3), "scoped — ünïcode"));
    let found = s.lookup_key(&nk.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!((found.key.scopes, found.tenant.limits), (scopes.clone(), all_limits(7)));

    let none = Scopes { models: vec![], endpoints: BTreeSet::new() };
    let updated = s
        .update_key(
            &nk.record.id,
            KeyUpdate {
                name: Some("renamed".into()),
                scopes: Some(none.clone()),
                limits: Some(Limits::default()),
                expires_at_ms: Some(None),
            },
        )
        .await
        .unwrap();
    assert_eq!(s.get_key(&nk.record.id).await.unwrap().unwrap(), updated);
    assert_eq!((updated.name.as_str(), &updated.scopes, &updated.limits), ("renamed", &none, &Limits::default()));
    assert_eq!(updated.expires_at_ms, None);

    let only_expiry =
        s.update_key(&nk.record.id, KeyUpdate { expires_at_ms: Some(Some(5)), ..KeyUpdate::default() }).await.unwrap();
    assert_eq!((only_expiry.expires_at_ms, only_expiry.name.as_str()), (Some(5), "renamed"));
    let unchanged = s.update_key(&nk.record.id, KeyUpdate::default()).await.unwrap();
    assert_eq!(unchanged.expires_at_ms, Some(5), "an update without expiry keeps it");

    let err = s.update_key(&KeyId::generate(), KeyUpdate::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let bad = Limits { usd_per_day: Some(-1.0), ..Limits::default() };
    let err = s.update_key(&nk.record.id, KeyUpdate { limits: Some(bad), ..KeyUpdate::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

pub async fn changes_since_sees_a_revoke_from_another_instance(db: &TestDb) {
    // A second gateway instance on the same database (its migrations are already applied).
    let other = Store::connect_with(&db.url, &options()).await.unwrap();
    let s = &db.store;
    let t = tenant(db, "polled").await;
    let nk = s.create_key(NewKeySpec::new(t.id.clone(), "k")).await.unwrap();
    let before = now_ms();
    assert!(other.keys_changed_since(before - 60_000).await.unwrap().iter().any(|k| k.id == nk.record.id));
    assert!(other.lookup_key(&nk.plaintext.digest()).await.unwrap().is_some());

    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = now_ms();
    assert!(other.keys_changed_since(since).await.unwrap().is_empty());
    assert!(other.tenants_changed_since(since).await.unwrap().is_empty());

    s.revoke_key(&nk.record.id).await.unwrap();
    let changed = other.keys_changed_since(since).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].id, nk.record.id);
    assert!(changed[0].revoked_at_ms.is_some());
    let seen = other.lookup_key(&nk.plaintext.digest()).await.unwrap().unwrap();
    assert_eq!(seen.key.status(now_ms()), KeyStatus::Revoked);

    s.update_tenant(&t.id, TenantUpdate { limits: Some(all_limits(1)), ..TenantUpdate::default() }).await.unwrap();
    let tenants = other.tenants_changed_since(since).await.unwrap();
    assert_eq!(tenants.iter().map(|t| &t.id).collect::<Vec<_>>(), vec![&t.id]);
    assert_eq!(tenants[0].limits, all_limits(1));
    other.close().await;
}
