use std::time::Duration;

use ferrogate_core::jobs::{
    AttemptOutcome, CancelOutcome, FailOutcome, JobFailure, JobKind, JobQueue, JobState, LeaseRequest, LeaseStatus,
    NewJob, Outcome,
};
use ferrogate_core::tenancy::time::Clock;
use serde_json::json;

use crate::common::{T0, TestDb, queue_on};

pub fn req(worker: &str, kinds: &[JobKind], n: u32) -> LeaseRequest {
    LeaseRequest {
        worker_id: worker.into(),
        kinds: kinds.to_vec(),
        max_jobs: n,
        visibility_timeout: Duration::from_secs(30),
    }
}

pub fn job(kind: JobKind, n: i64) -> NewJob {
    NewJob::new(kind, json!({ "n": n }))
}

pub fn retryable(e: &str) -> JobFailure {
    JobFailure { error: e.into(), retryable: true }
}

pub async fn enqueue_get_and_complete(db: &TestDb) {
    let q = db.queue();
    let mut new = job(JobKind::Response, 1);
    new.tenant_id = Some("t1".into());
    new.batch_id = Some("batch_1".into());
    let id = q.enqueue(new).await.unwrap();
    let stored = q.get(&id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.attempts, stored.run_after_ms), (JobState::Queued, 0, T0));
    assert_eq!((stored.payload, stored.tenant_id.unwrap().as_str()), (json!({"n": 1}), "t1"));

    assert!(q.lease(&req("w", &[JobKind::Webhook], 5)).await.unwrap().is_empty(), "other kinds only");
    let leased = q.lease(&req("w", &[JobKind::Response], 5)).await.unwrap();
    assert_eq!(leased.len(), 1);
    let l = &leased[0];
    assert_eq!((l.id(), l.lease.attempt, l.lease_until_ms), (&id, 1, T0 + 30_000));
    assert!(q.lease(&req("w2", &[JobKind::Response], 5)).await.unwrap().is_empty(), "leased once");

    db.clock.advance(20_000);
    assert_eq!(q.heartbeat(&l.lease, Duration::from_secs(30)).await.unwrap(), LeaseStatus::Held);
    assert_eq!(q.get(&id).await.unwrap().unwrap().lease_until_ms, Some(T0 + 50_000));
    db.clock.advance(20_000);
    assert!(q.lease(&req("w2", &[JobKind::Response], 5)).await.unwrap().is_empty(), "the heartbeat extended it");

    assert!(q.complete(&l.lease, Outcome::Succeeded(json!({"ok": true}))).await.unwrap());
    let done = q.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.result, done.finished_at_ms),
        (JobState::Succeeded, Some(json!({"ok": true})), Some(T0 + 40_000))
    );
    assert!(!q.complete(&l.lease, Outcome::Cancelled).await.unwrap(), "completing twice changes nothing");
    assert_eq!(q.heartbeat(&l.lease, Duration::from_secs(30)).await.unwrap(), LeaseStatus::Lost);
    let history = q.history(&id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].outcome, history[0].worker_id.as_str()), (AttemptOutcome::Succeeded, "w"));

    // An error answer is the job's own result: failed, not dead.
    let id2 = q.enqueue(job(JobKind::BatchItem, 2)).await.unwrap();
    let l2 = q.lease(&req("w", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    assert!(q.complete(&l2.lease, Outcome::Failed(json!({"status": 400}))).await.unwrap());
    assert_eq!(q.get(&id2).await.unwrap().unwrap().state, JobState::Failed);
    assert_eq!(q.stats().await.unwrap().dead(), 0);

    assert_eq!(q.prune_finished(T0 + 40_001).await.unwrap(), 2);
    assert!(q.get(&id).await.unwrap().is_none());
    assert!(q.history(&id).await.unwrap().is_empty(), "history goes with the job");
}

pub async fn dedupe_keys_store_one_job_and_batches_are_all_or_nothing(db: &TestDb) {
    let q = db.queue();
    let keyed = |n| NewJob { dedupe_key: Some(format!("batch_1:{n}")), ..job(JobKind::BatchItem, n) };
    let first = q.enqueue(keyed(1)).await.unwrap();
    assert_eq!(q.enqueue(keyed(1)).await.unwrap(), first);
    let ids = q.enqueue_many(vec![keyed(1), keyed(2), keyed(3), job(JobKind::BatchItem, 4)]).await.unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first);
    assert_eq!(q.stats().await.unwrap().kind(JobKind::BatchItem).ready, 4);

    let bad = NewJob { max_attempts: 0, ..job(JobKind::BatchItem, 9) };
    assert!(q.enqueue_many(vec![keyed(5), bad]).await.is_err());
    assert_eq!(q.stats().await.unwrap().kind(JobKind::BatchItem).ready, 4, "nothing of a refused batch is stored");
}

pub async fn priority_then_run_after_order(db: &TestDb) {
    let q = db.queue();
    let at = |n: i64, priority: i32, after: i64| NewJob {
        priority,
        run_after_ms: Some(T0 + after),
        ..job(JobKind::Response, n)
    };
    q.enqueue_many(vec![at(1, 5, -10), at(2, 1, -5), at(3, 3, -30), at(4, 1, -20), at(5, 0, 60_000)]).await.unwrap();
    let mut order = Vec::new();
    while let Some(l) = q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().pop() {
        order.push(l.payload["n"].as_i64().unwrap());
        q.complete(&l.lease, Outcome::Succeeded(json!(null))).await.unwrap();
    }
    assert_eq!(order, [4, 2, 3, 1], "priority first, then run_after; 5 is not due yet");
    db.clock.advance(60_000);
    let due = q.lease(&req("w", &[JobKind::Response], 10)).await.unwrap();
    assert_eq!(due.iter().map(|l| l.payload["n"].as_i64().unwrap()).collect::<Vec<_>>(), [5]);
}

pub async fn expired_lease_is_taken_over_and_the_old_holder_is_locked_out(db: &TestDb) {
    let q = db.queue();
    let id = q.enqueue(job(JobKind::Response, 1)).await.unwrap();
    let dead_worker = q.lease(&req("a", &[JobKind::Response], 1)).await.unwrap().remove(0);
    db.clock.advance(29_999);
    assert!(q.lease(&req("b", &[JobKind::Response], 1)).await.unwrap().is_empty(), "still held");
    db.clock.advance(2);
    let taken = q.lease(&req("b", &[JobKind::Response], 1)).await.unwrap().remove(0);
    assert_eq!((taken.id(), taken.lease.attempt), (&id, 2), "the lost run counts");
    assert_ne!(taken.lease.token, dead_worker.lease.token);

    assert!(!q.complete(&dead_worker.lease, Outcome::Succeeded(json!(1))).await.unwrap());
    assert_eq!(q.fail(&dead_worker.lease, retryable("late")).await.unwrap(), FailOutcome::LeaseLost);
    assert_eq!(q.heartbeat(&dead_worker.lease, Duration::from_secs(9)).await.unwrap(), LeaseStatus::Lost);
    assert!(!q.release(&dead_worker.lease).await.unwrap());
    assert!(q.complete(&taken.lease, Outcome::Succeeded(json!(2))).await.unwrap());
    assert_eq!(q.get(&id).await.unwrap().unwrap().result, Some(json!(2)));

    let history = q.history(&id).await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|a| (a.attempt, a.worker_id.as_str(), a.outcome)).collect();
    assert_eq!(outcomes, [(1, "a", AttemptOutcome::LeaseExpired), (2, "b", AttemptOutcome::Succeeded)]);
}

pub async fn retryable_failures_back_off(db: &TestDb) {
    // Default policy for responses: 1 s doubling, jitter fixed at 0.5.
    let q = db.queue();
    let id = q.enqueue(job(JobKind::Response, 1)).await.unwrap();
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        let l = q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().remove(0);
        assert_eq!(l.lease.attempt, attempt);
        let FailOutcome::Retrying { run_after_ms } = q.fail(&l.lease, retryable("503")).await.unwrap() else {
            panic!("retries remain");
        };
        let wait = run_after_ms - db.clock.now_ms();
        waits.push(wait);
        db.clock.advance(wait - 1);
        assert!(q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().is_empty(), "backing off");
        let stats = q.stats().await.unwrap().kind(JobKind::Response);
        assert_eq!((stats.delayed, stats.ready), (1, 0));
        db.clock.advance(1);
    }
    assert_eq!(waits, [500, 1000, 2000]);
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.attempts, record.last_error.as_deref()), (JobState::Queued, 3, Some("503")));
}

pub async fn cancel_queued_and_running_jobs(db: &TestDb) {
    let q = db.queue();
    let queued = q.enqueue(job(JobKind::Response, 1)).await.unwrap();
    assert_eq!(q.cancel(&queued).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(q.cancel(&queued).await.unwrap(), CancelOutcome::AlreadyFinished(JobState::Cancelled));
    assert!(q.lease(&req("w", &[JobKind::Response], 5)).await.unwrap().is_empty(), "a cancelled job never runs");

    let running = q.enqueue(job(JobKind::Response, 2)).await.unwrap();
    let l = q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().remove(0);
    assert_eq!(q.cancel(&running).await.unwrap(), CancelOutcome::Requested);
    assert_eq!(q.heartbeat(&l.lease, Duration::from_secs(30)).await.unwrap(), LeaseStatus::CancelRequested);
    assert!(q.complete(&l.lease, Outcome::Cancelled).await.unwrap());
    assert_eq!(q.get(&running).await.unwrap().unwrap().state, JobState::Cancelled);

    // A failure after a cancel request ends cancelled, not retried.
    let third = q.enqueue(job(JobKind::Response, 3)).await.unwrap();
    let l = q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().remove(0);
    q.cancel(&third).await.unwrap();
    assert_eq!(q.fail(&l.lease, retryable("stopped")).await.unwrap(), FailOutcome::Cancelled);
    // A cancelled run whose worker died is not run again.
    let fourth = q.enqueue(job(JobKind::Response, 4)).await.unwrap();
    q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap();
    q.cancel(&fourth).await.unwrap();
    db.clock.advance(31_000);
    assert!(q.lease(&req("w", &[JobKind::Response], 5)).await.unwrap().is_empty());
    assert_eq!(q.get(&fourth).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(q.cancel(&"job_nope".into()).await.unwrap(), CancelOutcome::NotFound);
}

pub async fn release_hands_back_without_counting(db: &TestDb) {
    let q = db.queue();
    let id = q.enqueue(job(JobKind::BatchItem, 1)).await.unwrap();
    let l = q.lease(&req("w", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    assert!(q.release(&l.lease).await.unwrap());
    let again = q.lease(&req("w2", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    assert_eq!((again.id(), again.lease.attempt), (&id, 1), "a released run is not counted");
    let outcomes: Vec<_> = q.history(&id).await.unwrap().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Released, AttemptOutcome::Running]);
}

pub async fn stats_and_batch_counts(db: &TestDb) {
    let q = db.queue();
    let in_batch = |n| NewJob { batch_id: Some("b1".into()), ..job(JobKind::BatchItem, n) };
    q.enqueue_many((0..5).map(in_batch).collect()).await.unwrap();
    q.enqueue(NewJob { run_after_ms: Some(T0 + 5000), ..job(JobKind::Webhook, 9) }).await.unwrap();
    db.clock.advance(1500);
    let l = q.lease(&req("w", &[JobKind::BatchItem], 2)).await.unwrap();
    q.complete(&l[0].lease, Outcome::Succeeded(json!(null))).await.unwrap();
    let stats = q.stats().await.unwrap();
    let b = stats.kind(JobKind::BatchItem);
    assert_eq!((b.ready, b.running, b.dead, b.oldest_ready_age_ms), (3, 1, 0, 1500));
    let w = stats.kind(JobKind::Webhook);
    assert_eq!((w.ready, w.delayed, w.oldest_ready_age_ms), (0, 1, 0));
    let counts = q.batch_counts("b1").await.unwrap();
    let c = |s| counts.get(&s).copied().unwrap_or(0);
    assert_eq!((c(JobState::Queued), c(JobState::Running), c(JobState::Succeeded)), (3, 1, 1));
    assert!(q.batch_counts("other").await.unwrap().is_empty());
}

pub async fn survives_reopening(db: &TestDb) {
    let q = db.queue();
    let ids = q.enqueue_many((0..3).map(|n| job(JobKind::BatchItem, n)).collect()).await.unwrap();
    let held = q.lease(&req("w", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    q.complete(&held.lease, Outcome::Succeeded(json!("done"))).await.unwrap();
    let running = q.lease(&req("w", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    db.store.close().await;

    let reopened = db.reopen().await;
    let q2 = queue_on(&reopened, &db.clock);
    assert_eq!(q2.get(&ids[0]).await.unwrap().unwrap().result, Some(json!("done")));
    assert_eq!(q2.get(running.id()).await.unwrap().unwrap().state, JobState::Running);
    let next = q2.lease(&req("w2", &[JobKind::BatchItem], 5)).await.unwrap();
    assert_eq!(next.len(), 1, "the third; the running one is still leased");
    db.clock.advance(31_000);
    let taken = q2.lease(&req("w2", &[JobKind::BatchItem], 5)).await.unwrap();
    assert_eq!(taken.iter().map(|l| l.id()).collect::<Vec<_>>(), [running.id(), next[0].id()]);
}

pub async fn batch_jobs_page_and_cancel_together(db: &TestDb) {
    let q = db.queue();
    let in_batch = |b: &str, n| NewJob { batch_id: Some(b.into()), ..job(JobKind::BatchItem, n) };
    let ids = q.enqueue_many((0..5).map(|n| in_batch("b1", n)).collect()).await.unwrap();
    q.enqueue(in_batch("b2", 9)).await.unwrap();
    let running = q.lease(&req("w", &[JobKind::BatchItem], 1)).await.unwrap().remove(0);
    let first = q.batch_jobs("b1", &ferrogate_core::jobs::Page::first(3)).await.unwrap();
    let next = ferrogate_core::jobs::Page { after: Some(first[2].id.to_string()), limit: 3 };
    let second = q.batch_jobs("b1", &next).await.unwrap();
    let seen: Vec<_> = first.iter().chain(&second).map(|j| j.id.clone()).collect();
    assert_eq!(seen, ids);

    assert_eq!(q.cancel_batch("b1").await.unwrap(), 4, "the queued ones");
    assert_eq!(q.heartbeat(&running.lease, Duration::from_secs(30)).await.unwrap(), LeaseStatus::CancelRequested);
    let counts = q.batch_counts("b1").await.unwrap();
    assert_eq!((counts.get(&JobState::Cancelled), counts.get(&JobState::Running)), (Some(&4), Some(&1)));
    assert_eq!(q.batch_counts("b2").await.unwrap().get(&JobState::Queued), Some(&1), "other batches untouched");
}
