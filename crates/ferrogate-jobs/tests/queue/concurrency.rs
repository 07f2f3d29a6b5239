use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrogate_core::jobs::{JobId, JobKind, JobQueue, JobState, LeaseRequest, Outcome};
use serde_json::json;

use crate::common::{TestDb, queue_on};
use crate::lifecycle::job;

const WORKERS: usize = 8;
const JOBS: i64 = 4000;

/// Runs every runnable job of `q` from `WORKERS` tasks, recording who ran what.
async fn drain(q: impl JobQueue + Clone + 'static, prefix: &str, runs: Arc<Mutex<HashMap<JobId, Vec<String>>>>) {
    let tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (q, runs, worker) = (q.clone(), runs.clone(), format!("{prefix}{w}"));
            tokio::spawn(async move {
                let request = LeaseRequest {
                    worker_id: worker.clone(),
                    kinds: vec![JobKind::BatchItem],
                    max_jobs: 10,
                    visibility_timeout: Duration::from_secs(600),
                };
                loop {
                    let leased = q.lease(&request).await.unwrap();
                    if leased.is_empty() {
                        break;
                    }
                    for l in leased {
                        runs.lock().unwrap().entry(l.id().clone()).or_default().push(worker.clone());
                        assert!(q.complete(&l.lease, Outcome::Succeeded(json!(worker))).await.unwrap());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn enqueue_all(q: &impl JobQueue) -> Vec<JobId> {
    let mut ids = Vec::new();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        ids.extend(q.enqueue_many(chunk.iter().map(|n| job(JobKind::BatchItem, *n)).collect()).await.unwrap());
    }
    ids
}

async fn check_each_ran_once(q: &impl JobQueue, ids: &[JobId], runs: &Mutex<HashMap<JobId, Vec<String>>>) {
    let runs = runs.lock().unwrap().clone();
    let twice: Vec<_> = runs.iter().filter(|(_, w)| w.len() != 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    assert_eq!(runs.len(), ids.len());
    let workers: std::collections::HashSet<_> = runs.values().flatten().collect();
    assert!(workers.len() > 1, "the work was shared: {workers:?}");
    let stats = q.stats().await.unwrap().kind(JobKind::BatchItem);
    assert_eq!((stats.ready, stats.running), (0, 0));
    for id in ids.iter().step_by(97) {
        assert_eq!(q.get(id).await.unwrap().unwrap().state, JobState::Succeeded);
    }
}

pub async fn concurrent_workers_never_run_a_job_twice(db: &TestDb) {
    let q = db.queue();
    let ids = enqueue_all(&q).await;
    let runs = Arc::new(Mutex::new(HashMap::new()));
    drain(q.clone(), "w", runs.clone()).await;
    check_each_ran_once(&q, &ids, &runs).await;
}

/// Two stores (two gateway instances) on one database share the work without overlap.
pub async fn two_instances_share_one_queue(db: &TestDb) {
    let q = db.queue();
    let ids = enqueue_all(&q).await;
    let other = queue_on(&db.reopen().await, &db.clock);
    let runs = Arc::new(Mutex::new(HashMap::new()));
    tokio::join!(drain(q.clone(), "a", runs.clone()), drain(other, "b", runs.clone()));
    check_each_ran_once(&q, &ids, &runs).await;
}
