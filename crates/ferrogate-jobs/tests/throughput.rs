//! Queue throughput on SQLite and PostgreSQL (ignored by default; numbers for docs/JOBS.md):
//! `cargo test -p ferrogate-jobs --release --test throughput -- --ignored --nocapture`.
//!
//! - latency: jobs enqueued one by one at a steady rate, the worker pool (8 slots, a runner that
//!   does nothing) idle-polling every 50 ms and woken by `notify` after each enqueue; enqueue →
//!   run start, p50 / p99.
//! - drain: a backlog of jobs run by the pool; jobs per second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferrogate_core::jobs::{JobKind, JobQueue, LeasedJob, NewJob};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_jobs::{AlwaysSpare, JobError, KindWorkers, PoolConfig, Runner, WorkerPool};
use ferrogate_store::DbKind;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Timing {
    waits_ms: Mutex<Vec<i64>>,
}

#[async_trait]
impl Runner for Timing {
    async fn run(&self, job: &LeasedJob, _cancel: CancellationToken) -> Result<Value, JobError> {
        self.waits_ms.lock().unwrap().push(now_ms() - job.created_at_ms);
        Ok(Value::Null)
    }
}

fn pool(queue: Arc<dyn JobQueue>, runner: Arc<Timing>) -> WorkerPool {
    let mut cfg = PoolConfig::new("bench", vec![KindWorkers { kind: JobKind::BatchItem, concurrency: 8 }]);
    cfg.poll_interval = Duration::from_millis(50);
    WorkerPool::start(queue, runner, Arc::new(AlwaysSpare), cfg)
}

async fn wait_for(runner: &Timing, n: usize) {
    while runner.waits_ms.lock().unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(kind: DbKind) {
    let db = common::TestDb::open(kind).await;
    let queue: Arc<dyn JobQueue> = Arc::new(db.store.job_queue());

    // Latency at a steady 200 jobs/s.
    let runner = Arc::new(Timing::default());
    let workers = pool(queue.clone(), runner.clone());
    let n = 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..n {
        tick.tick().await;
        queue.enqueue(NewJob::new(JobKind::BatchItem, json!({ "n": i }))).await.unwrap();
        workers.notify();
    }
    wait_for(&runner, n).await;
    workers.drain(Duration::from_secs(5)).await;
    let mut waits = runner.waits_ms.lock().unwrap().clone();
    waits.sort_unstable();

    // Drain rate of a backlog.
    let backlog = 5000;
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(500) {
        queue
            .enqueue_many(chunk.iter().map(|i| NewJob::new(JobKind::BatchItem, json!({ "n": i }))).collect())
            .await
            .unwrap();
    }
    let runner = Arc::new(Timing::default());
    let began = Instant::now();
    let workers = pool(queue.clone(), runner.clone());
    wait_for(&runner, backlog).await;
    let rate = backlog as f64 / began.elapsed().as_secs_f64();
    workers.drain(Duration::from_secs(5)).await;
    eprintln!(
        "{}: enqueue→start p50 {} ms, p99 {} ms (200 jobs/s); backlog of {backlog} drained at {rate:.0} jobs/s",
        kind.name(),
        percentile(&waits, 0.5),
        percentile(&waits, 0.99),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn sqlite_queue_throughput() {
    measure(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn postgres_queue_throughput() {
    measure(DbKind::Postgres).await;
}
