use ferrogate_core::jobs::{
    AttemptOutcome, DeadFilter, FailOutcome, JobFailure, JobKind, JobQueue, JobState, NewJob, Page,
};

use crate::common::TestDb;
use crate::lifecycle::{job, req, retryable};

/// Leases the one runnable job of `kind` and fails it; the clock then skips any backoff.
async fn fail_once(db: &TestDb, q: &impl JobQueue, kind: JobKind, failure: JobFailure) -> FailOutcome {
    let l = q.lease(&req("w", &[kind], 1)).await.unwrap().remove(0);
    let outcome = q.fail(&l.lease, failure).await.unwrap();
    db.clock.advance(3_600_000);
    outcome
}

pub async fn max_attempts_go_to_the_dlq_with_history(db: &TestDb) {
    let q = db.queue();
    let id = q.enqueue(NewJob { max_attempts: 3, ..job(JobKind::Response, 1) }).await.unwrap();
    for n in 1..=2 {
        let out = fail_once(db, &q, JobKind::Response, retryable(&format!("upstream 503 #{n}"))).await;
        assert!(matches!(out, FailOutcome::Retrying { .. }), "{out:?}");
    }
    assert_eq!(fail_once(db, &q, JobKind::Response, retryable("upstream 503 #3")).await, FailOutcome::Dead);
    assert!(q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().is_empty(), "dead jobs never run");

    let detail = q.get_dead(&id).await.unwrap().unwrap();
    assert_eq!((detail.job.state, detail.job.attempts), (JobState::Dead, 3));
    assert_eq!(detail.job.last_error.as_deref(), Some("upstream 503 #3"));
    let errors: Vec<_> = detail.attempts.iter().map(|a| (a.attempt, a.outcome, a.error.clone().unwrap())).collect();
    assert_eq!(errors.len(), 3);
    for (i, (attempt, outcome, error)) in errors.iter().enumerate() {
        assert_eq!((*attempt as usize, *outcome), (i + 1, AttemptOutcome::Error));
        assert_eq!(error, &format!("upstream 503 #{}", i + 1));
    }
    assert!(detail.attempts.windows(2).all(|w| w[0].started_at_ms < w[1].started_at_ms));
    assert_eq!(q.stats().await.unwrap().dead(), 1);

    // Replay: queued again with a fresh set of attempts.
    assert!(q.replay(&id).await.unwrap());
    assert!(!q.replay(&id).await.unwrap(), "only dead jobs replay");
    assert!(q.get_dead(&id).await.unwrap().is_none());
    let again = q.lease(&req("w", &[JobKind::Response], 1)).await.unwrap().remove(0);
    assert_eq!((again.id(), again.lease.attempt), (&id, 1));
    assert_eq!(q.history(&id).await.unwrap().len(), 4, "the history stays");
}

pub async fn poison_goes_straight_to_the_dlq(db: &TestDb) {
    let q = db.queue();
    let id = q.enqueue(job(JobKind::BatchItem, 1)).await.unwrap();
    let poison = JobFailure { error: "model rejects this input".into(), retryable: false };
    assert_eq!(fail_once(db, &q, JobKind::BatchItem, poison).await, FailOutcome::Dead);
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.attempts), (JobState::Dead, 1));
}

pub async fn a_dead_workers_last_attempt_goes_to_the_dlq(db: &TestDb) {
    let q = db.queue();
    let id = q.enqueue(NewJob { max_attempts: 2, ..job(JobKind::Webhook, 1) }).await.unwrap();
    for _ in 0..2 {
        q.lease(&req("crashy", &[JobKind::Webhook], 1)).await.unwrap().remove(0);
        db.clock.advance(31_000);
    }
    assert!(q.lease(&req("w", &[JobKind::Webhook], 1)).await.unwrap().is_empty());
    let detail = q.get_dead(&id).await.unwrap().expect("dead");
    assert!(detail.job.last_error.unwrap().contains("lease expired"));
    let outcomes: Vec<_> = detail.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::LeaseExpired, AttemptOutcome::LeaseExpired]);
}

pub async fn list_replay_and_purge_by_filter(db: &TestDb) {
    let q = db.queue();
    let poison = || JobFailure { error: "bad".into(), retryable: false };
    let mut jobs = Vec::new();
    for (n, (kind, batch, tenant)) in [
        (JobKind::BatchItem, Some("b1"), "t1"),
        (JobKind::BatchItem, Some("b1"), "t1"),
        (JobKind::BatchItem, Some("b2"), "t2"),
        (JobKind::Webhook, None, "t1"),
        (JobKind::Response, None, "t2"),
    ]
    .into_iter()
    .enumerate()
    {
        let new = NewJob {
            batch_id: batch.map(str::to_owned),
            tenant_id: Some(tenant.into()),
            ..job(kind, i64::try_from(n).unwrap())
        };
        jobs.push(q.enqueue(new).await.unwrap());
        assert_eq!(fail_once(db, &q, kind, poison()).await, FailOutcome::Dead);
    }
    let list = |f: DeadFilter| {
        let q = q.clone();
        async move { q.list_dead(&f, &Page::first(100)).await.unwrap().into_iter().map(|j| j.id).collect::<Vec<_>>() }
    };
    assert_eq!(list(DeadFilter::default()).await, jobs);
    let b1 = DeadFilter { batch_id: Some("b1".into()), ..DeadFilter::default() };
    assert_eq!(list(b1.clone()).await, jobs[..2]);
    let t2 = DeadFilter { tenant_id: Some("t2".into()), ..DeadFilter::default() };
    assert_eq!(list(t2.clone()).await, [jobs[2].clone(), jobs[4].clone()]);
    let webhooks = DeadFilter { kind: Some(JobKind::Webhook), ..DeadFilter::default() };
    assert_eq!(list(webhooks).await, [jobs[3].clone()]);

    // Pages by id.
    let first = q.list_dead(&DeadFilter::default(), &Page::first(2)).await.unwrap();
    let after = Page { after: Some(first[1].id.to_string()), limit: 2 };
    let second = q.list_dead(&DeadFilter::default(), &after).await.unwrap();
    assert_eq!(second.iter().map(|j| &j.id).collect::<Vec<_>>(), [&jobs[2], &jobs[3]]);

    assert_eq!(q.replay_dead(&b1).await.unwrap(), 2);
    assert_eq!(q.stats().await.unwrap().kind(JobKind::BatchItem).ready, 2);
    assert!(q.delete_dead(&jobs[4]).await.unwrap());
    assert!(!q.delete_dead(&jobs[4]).await.unwrap());
    assert!(!q.delete_dead(&jobs[0]).await.unwrap(), "a replayed job is not dead");
    assert_eq!(q.purge_dead(&t2).await.unwrap(), 1);
    assert_eq!(list(DeadFilter::default()).await, [jobs[3].clone()]);
    assert!(q.history(&jobs[2]).await.unwrap().is_empty(), "purged with its history");
}
