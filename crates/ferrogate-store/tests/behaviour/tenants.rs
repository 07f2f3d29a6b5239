use ferrogate_core::tenancy::{KeyStore, Limits, NewKeySpec, NewTenant, StoreError, TenantStore, TenantUpdate};

use crate::harness::TestDb;

fn named(name: &str) -> NewTenant {
    NewTenant { name: name.into(), limits: Limits::default() }
}

pub async fn tenant_crud_and_unique_names(db: &TestDb) {
    let s = &db.store;
    let limits = Limits { requests_per_minute: Some(60), usd_per_month: Some(12.5), ..Limits::default() };
    let a = s.create_tenant(NewTenant { name: "team-a".into(), limits: limits.clone() }).await.unwrap();
    assert_eq!(a.limits, limits);
    assert_eq!(s.get_tenant(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_tenant_by_name("team-a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_tenant_by_name("nobody").await.unwrap(), None);

    let dup = s.create_tenant(named("team-a")).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(ref m) if m.contains("team-a")), "{dup}");
    let bad = s.create_tenant(named("no spaces")).await.unwrap_err();
    assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");

    let b = s.create_tenant(named("team-b")).await.unwrap();
    assert_eq!(s.list_tenants().await.unwrap(), vec![a.clone(), b.clone()]);

    let taken = s.update_tenant(&b.id, TenantUpdate { name: Some("team-a".into()), limits: None }).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken}");
    let new_limits = Limits { tokens_per_day: Some(1000), ..Limits::default() };
    let b2 = s
        .update_tenant(&b.id, TenantUpdate { name: Some("team-c".into()), limits: Some(new_limits.clone()) })
        .await
        .unwrap();
    assert_eq!((b2.name.as_str(), &b2.limits, b2.created_at_ms), ("team-c", &new_limits, b.created_at_ms));
    assert!(b2.updated_at_ms >= b.updated_at_ms);
    let b3 = s.update_tenant(&b.id, TenantUpdate::default()).await.unwrap();
    assert_eq!((b3.name, b3.limits), (b2.name, b2.limits), "an empty update changes nothing");
    assert_eq!(s.get_tenant(&b.id).await.unwrap().unwrap().name, "team-c");

    let missing = ferrogate_core::tenancy::TenantId::generate();
    let err = s.update_tenant(&missing, TenantUpdate::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "tenant", .. }), "{err}");

    s.delete_tenant(&b.id).await.unwrap();
    assert_eq!(s.get_tenant(&b.id).await.unwrap(), None);
    let err = s.delete_tenant(&b.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    // The name is free again.
    s.create_tenant(named("team-c")).await.unwrap();
}

pub async fn tenant_delete_refuses_while_keys_are_active(db: &TestDb) {
    let s = &db.store;
    let t = s.create_tenant(named("doomed")).await.unwrap();
    let k1 = s.create_key(NewKeySpec::new(t.id.clone(), "one")).await.unwrap();
    let k2 = s.create_key(NewKeySpec::new(t.id.clone(), "two")).await.unwrap();

    let err = s.delete_tenant(&t.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("revoke")), "{err}");
    s.revoke_key(&k1.record.id).await.unwrap();
    assert!(matches!(s.delete_tenant(&t.id).await, Err(StoreError::Conflict(_))), "one key is still active");
    assert!(s.get_tenant(&t.id).await.unwrap().is_some());

    s.revoke_key(&k2.record.id).await.unwrap();
    s.delete_tenant(&t.id).await.unwrap();
    assert_eq!(s.get_tenant(&t.id).await.unwrap(), None);
    assert_eq!(s.get_key(&k1.record.id).await.unwrap(), None, "revoked keys go with their tenant");
    assert!(s.lookup_key(&k2.plaintext.digest()).await.unwrap().is_none());
}
