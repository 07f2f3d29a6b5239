use ferrogate_core::jobs::{
    AttemptReport, Delivery, DeliveryStatus, EventType, JobId, MessageId, NewEndpoint, Page, WebhookStore,
};

use ferrogate_store::SealingKey;

use crate::common::TestDb;

fn new(url: &str, events: &[EventType], tenant: Option<&str>) -> NewEndpoint {
    NewEndpoint { url: url.into(), events: events.to_vec(), tenant_id: tenant.map(Into::into) }
}

pub async fn webhook_endpoints_and_deliveries(db: &TestDb) {
    let (key, key_text) = SealingKey::generate().unwrap();
    let s = &db.store.webhooks(key);
    let all = s.create_endpoint(new("https://a.example/h", &[EventType::BatchCompleted], None)).await.unwrap();
    let t1 = s
        .create_endpoint(new(
            "https://b.example/h",
            &[EventType::BatchCompleted, EventType::ResponseFailed],
            Some("t1"),
        ))
        .await
        .unwrap();
    assert!(s.create_endpoint(new("ftp://x", &[EventType::BatchCompleted], None)).await.is_err());
    assert_ne!(all.secret, t1.secret);
    assert_eq!(s.get_endpoint(&all.endpoint.id).await.unwrap(), Some(all.endpoint.clone()));
    assert_eq!(s.list_endpoints().await.unwrap(), [all.endpoint.clone(), t1.endpoint.clone()]);
    let (_, secret) = s.endpoint_secret(&t1.endpoint.id).await.unwrap().unwrap();
    assert_eq!(secret, t1.secret);
    // Sealed at rest: the database never holds the secret; the same key (a restart) opens it,
    // another key does not.
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret FROM webhook_endpoints")
        .fetch_all(&mut <sqlx::AnyConnection as sqlx::Connection>::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert!(stored.iter().all(|v| v.starts_with("v1:") && !v.contains(&t1.secret.expose()[6..])), "{stored:?}");
    let restarted = db.store.webhooks(SealingKey::from_base64(&key_text).unwrap());
    assert_eq!(restarted.endpoint_secret(&all.endpoint.id).await.unwrap().unwrap().1, all.secret);
    let wrong = db.store.webhooks(SealingKey::generate().unwrap().0);
    assert!(wrong.endpoint_secret(&all.endpoint.id).await.is_err());

    let ids = |v: Vec<ferrogate_core::jobs::WebhookEndpoint>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let batch_t1 = s.subscribers(EventType::BatchCompleted, Some(&"t1".into())).await.unwrap();
    assert_eq!(ids(batch_t1), [all.endpoint.id.clone(), t1.endpoint.id.clone()]);
    let batch_t2 = s.subscribers(EventType::BatchCompleted, Some(&"t2".into())).await.unwrap();
    assert_eq!(ids(batch_t2), std::slice::from_ref(&all.endpoint.id), "a tenant's endpoint gets only its events");
    assert!(s.subscribers(EventType::BatchExpired, None).await.unwrap().is_empty());

    let delivery = |n: u32| Delivery {
        id: MessageId::from(format!("msg_{n:03}")),
        endpoint_id: t1.endpoint.id.clone(),
        event_type: EventType::ResponseFailed,
        job_id: JobId::generate(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: None,
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    s.insert_deliveries(&[delivery(1), delivery(2), delivery(3)]).await.unwrap();
    s.insert_deliveries(&[delivery(1)]).await.unwrap(); // again: nothing new
    let failed = AttemptReport { status: DeliveryStatus::Failed, status_code: Some(500), error: Some("500".into()) };
    s.record_attempt(&"msg_002".into(), &failed).await.unwrap();
    let d2 = s.get_delivery(&"msg_002".into()).await.unwrap().unwrap();
    assert_eq!((d2.status, d2.attempts, d2.last_status_code), (DeliveryStatus::Failed, 1, Some(500)));
    let page = s.list_deliveries(&t1.endpoint.id, None, &Page::first(2)).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["msg_001", "msg_002"]);
    let next = Page { after: Some("msg_002".into()), limit: 2 };
    assert_eq!(s.list_deliveries(&t1.endpoint.id, None, &next).await.unwrap().len(), 1);
    let only_failed = s.list_deliveries(&t1.endpoint.id, Some(DeliveryStatus::Failed), &Page::first(9)).await.unwrap();
    assert_eq!(only_failed, [d2]);

    assert!(s.delete_endpoint(&t1.endpoint.id).await.unwrap());
    assert!(!s.delete_endpoint(&t1.endpoint.id).await.unwrap());
    assert!(s.endpoint_secret(&t1.endpoint.id).await.unwrap().is_none());
    assert_eq!(s.list_deliveries(&t1.endpoint.id, None, &Page::first(9)).await.unwrap().len(), 3, "history stays");
}
