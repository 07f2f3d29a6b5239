//! Webhook delivery end to end: a real HTTP receiver on 127.0.0.1:0 that verifies every request
//! with the reference Standard Webhooks library, the real SQLite queue and worker pool, and the
//! queue's clock moved through the retry schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ferrogate_core::jobs::{
    DeliveryStatus, EventType, JobKind, JobQueue, JobState, LeaseRequest, NewEndpoint, WebhookStore,
};
use ferrogate_jobs::webhook::{Deliverer, DeliveryConfig, Publisher, WebhookEvent};
use ferrogate_jobs::{AlwaysSpare, KindWorkers, PoolConfig, WorkerPool};
use ferrogate_store::{DbKind, SealingKey};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::json;

#[derive(Debug, Clone)]
struct Seen {
    id: String,
    path: String,
    body: String,
    verified: bool,
    answered: u16,
}

/// An HTTP receiver: answers 503 while down, 200 when up, 307 on `/redirect`.
struct Receiver {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    secret: Arc<OnceLock<String>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(false)),
            secret: Arc::new(OnceLock::new()),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let (up, secret, seen) = (r.up.clone(), r.secret.clone(), r.seen.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (up, secret, seen) = (up.clone(), secret.clone(), seen.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (up, secret, seen) = (up.clone(), secret.clone(), seen.clone());
                    async move { Ok::<_, hyper::Error>(answer(req, &up, &secret, &seen).await) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) {
        for _ in 0..500 {
            if self.seen().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the receiver saw {} requests, not {n}", self.seen().len());
    }
}

async fn answer(
    req: Request<Incoming>,
    up: &AtomicBool,
    secret: &OnceLock<String>,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let verifier = standardwebhooks::Webhook::new(secret.get().unwrap()).unwrap();
    let verified = verifier.verify(&body, &parts.headers).is_ok();
    let id = parts.headers.get("webhook-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let status = match (path.as_str(), up.load(Ordering::SeqCst)) {
        ("/redirect", _) => 307,
        (_, true) => 200,
        (_, false) => 503,
    };
    let body = String::from_utf8(body.to_vec()).unwrap();
    seen.lock().unwrap().push(Seen { id, path, body, verified, answered: status });
    Response::builder().status(status).header("location", "/hook").body(Full::new(Bytes::new())).unwrap()
}

/// Waits until `n` webhook jobs are backing off (their failure recorded), so moving the clock
/// cannot race the retry's scheduling.
async fn backing_off(q: &dyn JobQueue, n: u64) {
    for _ in 0..500 {
        let stats = q.stats().await.unwrap().kind(JobKind::Webhook);
        if stats.delayed == n && stats.running == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} webhook jobs never backed off");
}

fn event(id: &str, event_type: EventType) -> WebhookEvent {
    WebhookEvent { id: id.into(), event_type, tenant_id: None, data: json!({ "id": id }), created_at: 1_767_225_600 }
}

fn endpoint(url: String, events: &[EventType]) -> NewEndpoint {
    NewEndpoint { url, events: events.to_vec(), tenant_id: None }
}

fn pool_config() -> PoolConfig {
    let mut c = PoolConfig::new("hooks", vec![KindWorkers { kind: JobKind::Webhook, concurrency: 2 }])
        .with_visibility_timeout(Duration::from_secs(5));
    c.poll_interval = Duration::from_millis(20);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_event_once_with_stable_ids() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = Arc::new(db.queue());
    let store: Arc<dyn WebhookStore> = Arc::new(db.store.webhooks(SealingKey::generate().unwrap().0));
    let rx = Receiver::start().await;
    let a = store
        .create_endpoint(endpoint(rx.url("/a"), &[EventType::BatchCompleted, EventType::ResponseCompleted]))
        .await
        .unwrap();
    rx.secret.set(a.secret.expose().to_owned()).unwrap();
    // Same secret check for both paths: b is verified with a's secret and must fail.
    let b = store.create_endpoint(endpoint(rx.url("/b"), &[EventType::ResponseFailed])).await.unwrap();

    let publisher = Publisher::new(store.clone(), q.clone(), 10);
    let mut ids = BTreeMap::new();
    for (evt, ty) in [
        ("evt_1", EventType::BatchCompleted),
        ("evt_2", EventType::ResponseCompleted),
        ("evt_3", EventType::ResponseFailed),
    ] {
        for id in publisher.publish(&event(evt, ty)).await.unwrap() {
            ids.insert(id.to_string(), evt);
        }
    }
    assert_eq!(ids.len(), 3);
    let again = publisher.publish(&event("evt_1", EventType::BatchCompleted)).await.unwrap();
    assert!(ids.contains_key(again[0].as_str()), "republishing makes no new message");
    assert_eq!(q.stats().await.unwrap().kind(JobKind::Webhook).ready, 3);

    let deliverer = Deliverer::new(
        store.clone(),
        &DeliveryConfig { allow_private_destinations: true, ..DeliveryConfig::default() },
    )
    .unwrap();
    let pool = WorkerPool::start(q.clone(), Arc::new(deliverer), Arc::new(AlwaysSpare), pool_config());
    rx.wait_for(3).await;
    backing_off(&*q, 3).await;
    db.clock.advance(5_000);
    pool.notify();
    rx.wait_for(6).await;
    backing_off(&*q, 3).await;
    rx.up.store(true, Ordering::SeqCst);
    db.clock.advance(300_000);
    pool.notify();
    rx.wait_for(9).await;
    pool.drain(Duration::from_secs(2)).await;

    let seen = rx.seen();
    assert_eq!(seen.len(), 9, "three attempts per message, nothing after delivery: {seen:#?}");
    let mut per_id: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for s in seen {
        per_id.entry(s.id.clone()).or_default().push(s);
    }
    assert_eq!(
        per_id.keys().collect::<BTreeSet<_>>(),
        ids.keys().collect::<BTreeSet<_>>(),
        "the same webhook-id on every retry"
    );
    for (id, attempts) in &per_id {
        let answers: Vec<u16> = attempts.iter().map(|s| s.answered).collect();
        assert_eq!(answers, [503, 503, 200], "{id}");
        assert!(attempts.iter().all(|s| s.body == attempts[0].body), "the same body on every retry");
        let body: serde_json::Value = serde_json::from_str(&attempts[0].body).unwrap();
        assert_eq!(body["id"], ids[id.as_str()]);
        let for_a = attempts[0].path == "/a";
        assert!(attempts.iter().all(|s| s.verified == for_a), "signed with each endpoint's own secret");
        let delivery = store.get_delivery(&id.as_str().into()).await.unwrap().unwrap();
        assert_eq!(
            (delivery.status, delivery.attempts, delivery.last_status_code),
            (DeliveryStatus::Delivered, 3, Some(200))
        );
        assert_eq!(q.get(&delivery.job_id).await.unwrap().unwrap().state, JobState::Succeeded);
    }
    let b_deliveries = store
        .list_deliveries(&b.endpoint.id, Some(DeliveryStatus::Delivered), &ferrogate_core::jobs::Page::first(10))
        .await
        .unwrap();
    assert_eq!(b_deliveries.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssrf_guard_refuses_private_destinations_and_redirects_are_not_followed() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = Arc::new(db.queue());
    let store: Arc<dyn WebhookStore> = Arc::new(db.store.webhooks(SealingKey::generate().unwrap().0));
    let rx = Receiver::start().await;
    rx.up.store(true, Ordering::SeqCst);
    let port = rx.addr.port();
    let urls = [
        rx.url("/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        "http://10.0.0.1:9/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ];
    for url in &urls {
        let created = store.create_endpoint(endpoint(url.clone(), &[EventType::ResponseCompleted])).await.unwrap();
        let _ = rx.secret.set(created.secret.expose().to_owned());
    }
    let publisher = Publisher::new(store.clone(), q.clone(), 10);
    let messages = publisher.publish(&event("evt_ssrf", EventType::ResponseCompleted)).await.unwrap();
    assert_eq!(messages.len(), urls.len());

    let guarded = Deliverer::new(store.clone(), &DeliveryConfig::default()).unwrap();
    let request = LeaseRequest {
        worker_id: "t".into(),
        kinds: vec![JobKind::Webhook],
        max_jobs: 10,
        visibility_timeout: Duration::from_secs(30),
    };
    let leased = q.lease(&request).await.unwrap();
    assert_eq!(leased.len(), urls.len());
    for job in &leased {
        let err = guarded.deliver(job).await.unwrap_err();
        assert!(!err.retryable && err.message.contains("not a public address"), "{err:?}");
    }
    assert!(rx.seen().is_empty(), "no request reached the receiver");
    for id in &messages {
        let d = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
    }

    // Allowed, a redirect is an answer like any other non-2xx: retried, never followed.
    let open = Deliverer::new(
        store.clone(),
        &DeliveryConfig { allow_private_destinations: true, ..DeliveryConfig::default() },
    )
    .unwrap();
    let redirecting = store.create_endpoint(endpoint(rx.url("/redirect"), &[EventType::BatchExpired])).await.unwrap();
    publisher.publish(&event("evt_redirect", EventType::BatchExpired)).await.unwrap();
    let job = q.lease(&request).await.unwrap().remove(0);
    let err = open.deliver(&job).await.unwrap_err();
    assert!(err.retryable && err.message.contains("307"), "{err:?}");
    let paths: Vec<String> = rx.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/redirect"]);

    // A deleted endpoint ends its messages as failed answers, not DLQ entries.
    assert!(store.delete_endpoint(&redirecting.endpoint.id).await.unwrap());
    let gone = open.deliver(&job).await.unwrap_err();
    assert!(gone.answer.is_some() && gone.message.contains("deleted"), "{gone:?}");
}
