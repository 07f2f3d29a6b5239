//! The worker pool on the real SQLite queue (real time: the queue's clock is the wall clock
//! here, with short leases), driven by a test runner whose behaviour each job's payload picks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::jobs::{JobId, JobKind, JobQueue, JobState, NewJob, RetryPolicies, RetryPolicy};
use ferrogate_jobs::{AlwaysSpare, Capacity, Drained, JobError, KindWorkers, PoolConfig, Runner, WorkerPool};
use ferrogate_store::{DbKind, SqlQueue};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Runs jobs by their payload's `"do"`: `ok`, `sleep` (ms, ignoring cancels), `wait_cancel`,
/// `flaky` (fails its first attempt), `poison`, `bad_request`.
#[derive(Default)]
struct TestRunner {
    runs: Mutex<HashMap<JobId, usize>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

#[async_trait]
impl Runner for TestRunner {
    async fn run(&self, job: &ferrogate_core::jobs::LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        *self.runs.lock().unwrap().entry(job.id().clone()).or_default() += 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let result = self.act(job, cancel).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl TestRunner {
    async fn act(&self, job: &ferrogate_core::jobs::LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        let ms = job.payload["ms"].as_u64().unwrap_or(20);
        match job.payload["do"].as_str().unwrap_or("ok") {
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!("slept"))
            }
            "wait_cancel" => {
                cancel.cancelled().await;
                Err(JobError::retryable("cancelled"))
            }
            "flaky" if job.lease.attempt == 1 => Err(JobError::retryable("first attempt fails")),
            "poison" => Err(JobError::poison("never works")),
            "bad_request" => Err(JobError::failed("upstream said 400", json!({"status": 400}))),
            _ => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!({"attempt": job.lease.attempt}))
            }
        }
    }

    fn runs(&self, id: &JobId) -> usize {
        self.runs.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

fn config(concurrency: usize) -> PoolConfig {
    let mut c = PoolConfig::new("test-host", vec![KindWorkers { kind: JobKind::BatchItem, concurrency }])
        .with_visibility_timeout(Duration::from_millis(600));
    c.poll_interval = Duration::from_millis(20);
    c.capacity_poll = Duration::from_millis(10);
    c
}

async fn sqlite_queue(db: &common::TestDb) -> SqlQueue {
    let fast = RetryPolicy::Exponential { base: Duration::from_millis(10), cap: Duration::from_millis(10) };
    db.store.job_queue().with_retries(RetryPolicies { batch_item: fast, ..RetryPolicies::default() })
}

fn start(q: &SqlQueue, runner: &Arc<TestRunner>, capacity: Arc<dyn Capacity>, cfg: PoolConfig) -> WorkerPool {
    WorkerPool::start(Arc::new(q.clone()), runner.clone(), capacity, cfg)
}

/// Polls until the job reaches a terminal state (at most 10 s).
async fn settled(q: &SqlQueue, id: &JobId) -> ferrogate_core::jobs::JobRecord {
    for _ in 0..500 {
        let job = q.get(id).await.unwrap().unwrap();
        if job.state.is_terminal() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} did not settle");
}

fn work(what: Value) -> NewJob {
    NewJob::new(JobKind::BatchItem, what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_job_once_within_its_concurrency() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let ids = q.enqueue_many((0..40).map(|_| work(json!({"do": "ok", "ms": 15}))).collect()).await.unwrap();
    let runner = Arc::new(TestRunner::default());
    let pool = start(&q, &runner, Arc::new(AlwaysSpare), config(4));
    for id in &ids {
        assert_eq!(settled(&q, id).await.state, JobState::Succeeded);
        assert_eq!(runner.runs(id), 1);
    }
    assert_eq!(pool.drain(Duration::from_secs(1)).await, Drained::Finished);
    let most = runner.most_at_once.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "ran in parallel, at most 4 at once: {most}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_from_a_second_worker() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let id = q.enqueue(work(json!({"do": "sleep", "ms": 3000}))).await.unwrap();
    let runner = Arc::new(TestRunner::default());
    // 1.2 s leases renewed every 400 ms: a loaded machine may delay one renewal, not three.
    let long_leases = || config(1).with_visibility_timeout(Duration::from_millis(1200));
    let a = start(&q, &runner, Arc::new(AlwaysSpare), long_leases());
    let mut other = long_leases();
    other.instance = "other-host".into();
    let b = start(&q, &runner, Arc::new(AlwaysSpare), other);
    let job = settled(&q, &id).await;
    assert_eq!((job.state, job.attempts, runner.runs(&id)), (JobState::Succeeded, 1, 1), "3 s on 1.2 s leases");
    a.drain(Duration::from_secs(1)).await;
    b.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_retry_poison_and_error_answers() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let flaky = q.enqueue(work(json!({"do": "flaky"}))).await.unwrap();
    let poison = q.enqueue(work(json!({"do": "poison"}))).await.unwrap();
    let bad = q.enqueue(work(json!({"do": "bad_request"}))).await.unwrap();
    let runner = Arc::new(TestRunner::default());
    let pool = start(&q, &runner, Arc::new(AlwaysSpare), config(2));
    let f = settled(&q, &flaky).await;
    assert_eq!((f.state, f.attempts, f.result), (JobState::Succeeded, 2, Some(json!({"attempt": 2}))));
    let p = settled(&q, &poison).await;
    assert_eq!((p.state, p.attempts, p.last_error.as_deref()), (JobState::Dead, 1, Some("never works")));
    let b = settled(&q, &bad).await;
    assert_eq!((b.state, b.result), (JobState::Failed, Some(json!({"status": 400}))));
    pool.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_running_job_through_its_heartbeat() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let id = q.enqueue(work(json!({"do": "wait_cancel"}))).await.unwrap();
    let runner = Arc::new(TestRunner::default());
    let pool = start(&q, &runner, Arc::new(AlwaysSpare), config(1));
    while q.get(&id).await.unwrap().unwrap().state != JobState::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = tokio::time::Instant::now();
    q.cancel(&id).await.unwrap();
    assert_eq!(settled(&q, &id).await.state, JobState::Cancelled);
    assert!(asked.elapsed() < Duration::from_millis(1500), "within a heartbeat or so (200 ms): {:?}", asked.elapsed());
    pool.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_waits_for_spare_capacity() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let id = q.enqueue(work(json!({"do": "ok"}))).await.unwrap();
    let spare = Arc::new(AtomicBool::new(false));
    let flag = spare.clone();
    let capacity: Arc<dyn Capacity> = Arc::new(move || flag.load(Ordering::SeqCst));
    let runner = Arc::new(TestRunner::default());
    let pool = start(&q, &runner, capacity, config(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.get(&id).await.unwrap().unwrap().state, JobState::Queued, "busy: not leased");
    spare.store(true, Ordering::SeqCst);
    assert_eq!(settled(&q, &id).await.state, JobState::Succeeded);
    pool.drain(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_short_jobs_and_hands_back_long_ones() {
    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let short = q.enqueue(work(json!({"do": "sleep", "ms": 100}))).await.unwrap();
    let long = q.enqueue(work(json!({"do": "sleep", "ms": 60_000}))).await.unwrap();
    let runner = Arc::new(TestRunner::default());
    let pool = start(&q, &runner, Arc::new(AlwaysSpare), config(2));
    while runner.running.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later = q.enqueue(work(json!({"do": "ok"}))).await.unwrap();
    let began = tokio::time::Instant::now();
    assert_eq!(pool.drain(Duration::from_millis(500)).await, Drained::HandedBack);
    assert!(began.elapsed() < Duration::from_secs(2), "{:?}", began.elapsed());
    assert_eq!(q.get(&short).await.unwrap().unwrap().state, JobState::Succeeded);
    let handed_back = q.get(&long).await.unwrap().unwrap();
    assert_eq!((handed_back.state, handed_back.attempts), (JobState::Queued, 0), "released, uncounted");
    assert_eq!(runner.runs(&later), 0, "nothing leased after the drain began");
    assert_eq!(q.get(&later).await.unwrap().unwrap().state, JobState::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_responses_announce_their_end_to_webhook_subscribers() {
    use ferrogate_core::jobs::{EventType, NewEndpoint, Page, WebhookStore};
    use ferrogate_jobs::background::{ResponseEvents, job_id_of, response_id, response_status};
    use ferrogate_jobs::webhook::Publisher;

    let db = common::TestDb::open(DbKind::Sqlite).await;
    let q = sqlite_queue(&db).await;
    let hooks: Arc<dyn WebhookStore> = Arc::new(db.store.webhooks(ferrogate_store::SealingKey::generate().unwrap().0));
    let events = vec![EventType::ResponseCompleted, EventType::ResponseFailed];
    let endpoint = hooks.create_endpoint(NewEndpoint { url: "https://h.example/r".into(), events, tenant_id: None });
    let endpoint = endpoint.await.unwrap().endpoint;
    let respond = |what: Value| NewJob::new(JobKind::Response, what);
    let ok = q.enqueue(respond(json!({"do": "ok"}))).await.unwrap();
    let poison = q.enqueue(respond(json!({"do": "poison"}))).await.unwrap();
    assert_eq!(job_id_of(&response_id(&ok)), Some(ok.clone()));

    let publisher = Arc::new(Publisher::new(hooks.clone(), Arc::new(q.clone()), 10));
    let mut cfg = config(2);
    cfg.kinds = vec![KindWorkers { kind: JobKind::Response, concurrency: 2 }];
    let runner = Arc::new(TestRunner::default());
    let pool = WorkerPool::start_with_hooks(
        Arc::new(q.clone()),
        runner,
        Arc::new(AlwaysSpare),
        cfg,
        Arc::new(ResponseEvents(publisher)),
    );
    assert_eq!(response_status(settled(&q, &ok).await.state), "completed");
    assert_eq!(response_status(settled(&q, &poison).await.state), "failed");
    pool.drain(Duration::from_secs(1)).await;

    let delivered = hooks.list_deliveries(&endpoint.id, None, &Page::first(10)).await.unwrap();
    let mut kinds: Vec<EventType> = delivered.iter().map(|d| d.event_type).collect();
    kinds.sort();
    assert_eq!(kinds, [EventType::ResponseCompleted, EventType::ResponseFailed]);
}
