//! Batches end to end on the real SQLite stores: upload, validate, run every line through the
//! worker pool, write the output and error files; cancel; a crash mid-batch. Every case runs on
//! SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestDb;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::jobs::{
    Batch, BatchEndpoint, BatchStatus, BatchStore, FileLimits, FilePurpose, FileStore, JobKind, JobQueue, LeasedJob,
    NewBatch, NewFile,
};
use ferrogate_core::jobs::{EventType, NewEndpoint, Page, WebhookStore};
use ferrogate_jobs::batch::{BatchConfig, BatchDriver, BatchItemJob, ItemResponse};
use ferrogate_jobs::webhook::Publisher;
use ferrogate_jobs::{AlwaysSpare, JobError, KindWorkers, PoolConfig, Runner, WorkerPool};
use ferrogate_store::{SealingKey, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Answers each line by its body's `"answer"`: 200 by default, `"400"`, `"poison"`, `"hang"`.
struct EchoRunner;

#[async_trait]
impl Runner for EchoRunner {
    async fn run(&self, job: &LeasedJob, cancel: CancellationToken) -> Result<Value, JobError> {
        let item: BatchItemJob =
            serde_json::from_value(job.payload.clone()).map_err(|e| JobError::poison(e.to_string()))?;
        let response = |status_code| ItemResponse {
            status_code,
            request_id: format!("req-{}", item.custom_id),
            body: json!({ "echo": item.custom_id }),
        };
        match item.body["answer"].as_str().unwrap_or("200") {
            "400" => Err(JobError::failed("400", serde_json::to_value(response(400)).unwrap())),
            "poison" => Err(JobError::poison("the model refuses this input")),
            "hang" => {
                cancel.cancelled().await;
                Err(JobError::retryable("stopped"))
            }
            _ => Ok(serde_json::to_value(response(200)).unwrap()),
        }
    }
}

fn input(answers: &[&str]) -> String {
    answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let body = json!({ "model": "m", "messages": [], "answer": a });
            json!({ "custom_id": format!("req-{i}"), "method": "POST", "url": "/v1/chat/completions", "body": body })
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn new_batch(store: &Store, content: &str) -> Batch {
    let file = NewFile {
        tenant_id: "t1".into(),
        purpose: FilePurpose::Batch,
        filename: "in.jsonl".into(),
        content: content.into(),
    };
    let file = store.create_file(file, &FileLimits::default()).await.unwrap();
    let new = NewBatch {
        tenant_id: "t1".into(),
        key_id: None,
        endpoint: BatchEndpoint::ChatCompletions,
        input_file_id: file.id,
        completion_window_ms: 86_400_000,
        metadata: None,
    };
    store.create_batch(new).await.unwrap()
}

fn driver(store: &Store) -> BatchDriver {
    let s = Arc::new(store.clone());
    BatchDriver::new(
        Arc::new(store.job_queue()),
        s.clone(),
        s,
        BatchConfig { item_max_attempts: 2, ..BatchConfig::default() },
    )
}

fn pool(store: &Store) -> WorkerPool {
    let mut cfg = PoolConfig::new("batch-host", vec![KindWorkers { kind: JobKind::BatchItem, concurrency: 4 }])
        .with_visibility_timeout(Duration::from_millis(600));
    cfg.poll_interval = Duration::from_millis(20);
    WorkerPool::start(Arc::new(store.job_queue()), Arc::new(EchoRunner), Arc::new(AlwaysSpare), cfg)
}

/// Ticks until the batch is in a terminal status (at most 10 s).
async fn settle(store: &Store, driver: &BatchDriver, batch: &Batch) -> Batch {
    for _ in 0..500 {
        driver.tick().await.unwrap();
        let now = store.get_batch(None, &batch.id).await.unwrap().unwrap();
        if now.status.is_terminal() {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("batch did not finish");
}

async fn lines_of(store: &Store, file: Option<&ferrogate_core::jobs::FileId>) -> Vec<Value> {
    let Some(id) = file else { return Vec::new() };
    let content = store.file_content(&"t1".into(), id).await.unwrap().unwrap();
    content.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn custom_ids(lines: &[Value]) -> Vec<String> {
    lines.iter().map(|l| l["custom_id"].as_str().unwrap().to_owned()).collect()
}

against_every_store!(
    cases::a_batch_runs_every_line_once_into_its_output_and_error_files,
    cases::an_invalid_input_file_fails_the_batch_with_line_numbers,
    cases::cancel_stops_running_lines_and_reports_the_rest,
    cases::a_crash_mid_batch_loses_nothing_and_duplicates_nothing,
    cases::two_instances_drive_one_batch_to_one_set_of_files,
);

mod cases {
    use super::*;

    pub async fn a_batch_runs_every_line_once_into_its_output_and_error_files(db: &TestDb) {
        let answers = ["200", "400", "200", "poison", "200", "200"];
        let batch = new_batch(&db.store, &input(&answers)).await;
        let driver = driver(&db.store);
        let started = driver.start(&batch).await.unwrap().unwrap();
        assert_eq!((started.status, started.request_counts.total), (BatchStatus::InProgress, 6));
        assert!(driver.start(&batch).await.unwrap().is_none(), "started once");

        let workers = pool(&db.store);
        let done = settle(&db.store, &driver, &batch).await;
        workers.drain(Duration::from_secs(1)).await;
        assert_eq!(done.status, BatchStatus::Completed);
        assert_eq!((done.request_counts.total, done.request_counts.completed, done.request_counts.failed), (6, 4, 2));
        assert!(done.times.finalizing_at_ms.is_some() && done.times.completed_at_ms.is_some());

        let output = lines_of(&db.store, done.output_file_id.as_ref()).await;
        assert_eq!(custom_ids(&output), ["req-0", "req-2", "req-4", "req-5"], "in input order, each once");
        assert_eq!(output[0]["response"]["status_code"], 200);
        assert_eq!(output[0]["response"]["body"]["echo"], "req-0");
        assert!(output[0]["id"].as_str().unwrap().starts_with("batch_req_"));
        let errors = lines_of(&db.store, done.error_file_id.as_ref()).await;
        assert_eq!(custom_ids(&errors), ["req-1", "req-3"]);
        assert_eq!(errors[0]["response"]["status_code"], 400);
        assert_eq!(errors[1]["error"]["code"], "server_error");
        let output_file =
            db.store.get_file(&"t1".into(), done.output_file_id.as_ref().unwrap()).await.unwrap().unwrap();
        assert_eq!(output_file.purpose, FilePurpose::BatchOutput);
    }

    pub async fn an_invalid_input_file_fails_the_batch_with_line_numbers(db: &TestDb) {
        let content = format!("{}\nnot json\n{}", input(&["200"]), input(&["200"]));
        let batch = new_batch(&db.store, &content).await;
        // With a subscriber to batch.failed: the end is announced, once.
        let hooks: Arc<dyn WebhookStore> = Arc::new(db.store.webhooks(SealingKey::generate().unwrap().0));
        let endpoint = NewEndpoint {
            url: "https://hooks.example/b".into(),
            events: vec![EventType::BatchFailed],
            tenant_id: None,
        };
        let endpoint = hooks.create_endpoint(endpoint).await.unwrap().endpoint;
        let queue: Arc<dyn JobQueue> = Arc::new(db.store.job_queue());
        let publisher = Arc::new(Publisher::new(hooks.clone(), queue.clone(), 10));
        let driver = driver(&db.store).with_events(publisher);
        let failed = settle(&db.store, &driver, &batch).await;
        assert_eq!(failed.status, BatchStatus::Failed);
        let found: Vec<_> = failed.errors.iter().map(|e| (e.line, e.code.as_str())).collect();
        assert_eq!(found, [(Some(2), "invalid_json_line"), (Some(3), "duplicate_custom_id")]);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.kind(JobKind::BatchItem).ready, stats.kind(JobKind::Webhook).ready), (0, 1));
        driver.tick().await.unwrap();
        let deliveries = hooks.list_deliveries(&endpoint.id, None, &Page::first(10)).await.unwrap();
        assert_eq!(deliveries.iter().map(|d| d.event_type).collect::<Vec<_>>(), [EventType::BatchFailed]);
    }

    pub async fn cancel_stops_running_lines_and_reports_the_rest(db: &TestDb) {
        let batch = new_batch(&db.store, &input(&["200", "hang", "hang", "hang", "hang", "hang"])).await;
        let driver = driver(&db.store);
        driver.start(&batch).await.unwrap();
        let workers = pool(&db.store);
        // Wait until req-0 is done and the hanging lines hold the workers.
        for _ in 0..200 {
            driver.tick().await.unwrap();
            if db.store.get_batch(None, &batch.id).await.unwrap().unwrap().request_counts.completed == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cancelling = driver.cancel(&"t1".into(), &batch.id).await.unwrap().unwrap();
        assert_eq!(cancelling.status, BatchStatus::Cancelling);
        assert!(driver.cancel(&"t2".into(), &batch.id).await.unwrap().is_none(), "another tenant's batch is not found");
        let done = settle(&db.store, &driver, &batch).await;
        workers.drain(Duration::from_secs(1)).await;
        assert_eq!(done.status, BatchStatus::Cancelled);
        assert_eq!((done.request_counts.completed, done.request_counts.failed), (1, 5));
        assert_eq!(custom_ids(&lines_of(&db.store, done.output_file_id.as_ref()).await), ["req-0"]);
        let errors = lines_of(&db.store, done.error_file_id.as_ref()).await;
        assert_eq!(errors.len(), 5);
        assert!(errors.iter().all(|e| e["error"]["code"] == "batch_cancelled"), "{errors:?}");
    }

    /// Kill the gateway mid-batch (pool and driver dropped without draining, the store closed), start
    /// again on the same file: the batch completes, every line exactly once in the files.
    pub async fn a_crash_mid_batch_loses_nothing_and_duplicates_nothing(db: &TestDb) {
        let answers: Vec<&str> = (0..60).map(|i| if i % 10 == 3 { "400" } else { "200" }).collect();
        let batch = new_batch(&db.store, &input(&answers)).await;
        let first = driver(&db.store);
        first.start(&batch).await.unwrap();
        let workers = pool(&db.store);
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(workers); // no drain: running lines keep their leases until they expire
        db.store.close().await;

        let reopened = db.reopen().await;
        let again = driver(&reopened);
        let workers = pool(&reopened);
        let done = settle(&reopened, &again, &batch).await;
        workers.drain(Duration::from_secs(1)).await;
        assert_eq!(done.status, BatchStatus::Completed);
        let c = done.request_counts;
        assert_eq!((c.total, c.completed + c.failed, c.failed), (60, 60, 6));
        let mut all = custom_ids(&lines_of(&reopened, done.output_file_id.as_ref()).await);
        all.extend(custom_ids(&lines_of(&reopened, done.error_file_id.as_ref()).await));
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!((all.len(), distinct.len()), (60, 60), "no custom_id twice, none lost");
    }

    /// Two gateway instances tick the same batches and run its lines: one set of files, each
    /// line once.
    pub async fn two_instances_drive_one_batch_to_one_set_of_files(db: &TestDb) {
        let answers: Vec<&str> = vec!["200"; 40];
        let batch = new_batch(&db.store, &input(&answers)).await;
        let other = db.reopen().await;
        let (a, b) = (driver(&db.store), driver(&other));
        let (pool_a, pool_b) = (pool(&db.store), pool(&other));
        let mut done = None;
        for _ in 0..500 {
            let (ra, rb) = tokio::join!(a.tick(), b.tick());
            ra.unwrap();
            rb.unwrap();
            let now = db.store.get_batch(None, &batch.id).await.unwrap().unwrap();
            if now.status.is_terminal() {
                done = Some(now);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pool_a.drain(Duration::from_secs(1)).await;
        pool_b.drain(Duration::from_secs(1)).await;
        let done = done.expect("the batch finished");
        assert_eq!((done.status, done.request_counts.completed), (BatchStatus::Completed, 40));
        let outputs =
            db.store.list_files(&"t1".into(), Some(FilePurpose::BatchOutput), &Page::first(10)).await.unwrap();
        assert_eq!(outputs.len(), 1, "one output file");
        let ids = custom_ids(&lines_of(&db.store, done.output_file_id.as_ref()).await);
        assert_eq!((ids.len(), ids.iter().collect::<BTreeSet<_>>().len()), (40, 40));
    }
}
