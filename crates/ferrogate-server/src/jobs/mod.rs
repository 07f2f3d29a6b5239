//! Background work at the edge: the stores the composition root hands in ([`JobServices`]), the
//! batch driver over them ([`Jobs`]), the worker pool that runs `batch_item`, `webhook` and
//! `response` jobs through [`runner::EdgeRunner`] (batch lines and background responses go
//! through `pipeline::run` as their owner, at batch priority; responses end with `response.*`
//! webhook events), the batch ticker, and the drain on shutdown.
//!
//! Invariants: background work takes only spare capacity ([`capacity::Spare`]: no interactive
//! waiter in any deployment queue); every effect of a job is idempotent (at-least-once runs).

pub mod capacity;
mod respond;
pub mod routes;
pub mod runner;
pub mod services;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::jobs::{JobKind, JobQueue};
use ferrogate_jobs::background::ResponseEvents;
use ferrogate_jobs::{KindWorkers, PoolConfig, WorkerPool};

pub use self::services::{JobServices, Jobs};
use crate::state::AppState;

/// Starts the worker pool and the batch ticker as background tasks of `st`; both stop when
/// draining starts, the pool handing its unfinished jobs back to the queue by the grace deadline.
pub fn spawn(st: &AppState) -> Result<(), String> {
    let Some(jobs) = st.jobs.clone() else { return Ok(()) };
    let s = &jobs.services;
    let runner = runner::EdgeRunner::new(st.clone(), &s.delivery, Arc::clone(&s.webhooks))?;
    let kinds = vec![
        KindWorkers { kind: JobKind::BatchItem, concurrency: s.batch_concurrency.max(1) },
        KindWorkers { kind: JobKind::Webhook, concurrency: 4 },
        KindWorkers { kind: JobKind::Response, concurrency: s.batch_concurrency.max(1) },
    ];
    let pool = WorkerPool::start_with_hooks(
        Arc::clone(&s.queue),
        Arc::new(runner),
        Arc::new(capacity::Spare::new(st.clone())),
        PoolConfig::new(s.instance.clone(), kinds).with_visibility_timeout(s.lease),
        Arc::new(ResponseEvents(Arc::clone(&jobs.publisher))),
    );
    let (stop, grace) = (st.stopping.clone(), st.settings.shutdown_grace);
    st.tasks.spawn(async move {
        stop.cancelled().await;
        // Within the server's own grace period, which ends the background tasks it waits for.
        let drained = pool.drain(grace.saturating_sub(Duration::from_millis(500))).await;
        tracing::info!(?drained, "background workers drained");
    });
    spawn_gauges(st, Arc::clone(&s.queue));
    let (stop, every) = (st.stopping.clone(), s.tick_every);
    st.tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = jobs.driver.tick().await {
                        tracing::warn!(error = %e, "batch driver tick failed");
                    }
                }
            }
        }
    });
    Ok(())
}

/// Every few seconds, the queue's depth, oldest item and DLQ size into the metrics (a database
/// query: not in the one-second sampler).
fn spawn_gauges(st: &AppState, queue: Arc<dyn JobQueue>) {
    let st2 = st.clone();
    st.tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = st2.stopping.cancelled() => return,
                _ = tick.tick() => match queue.stats().await {
                    Ok(stats) => st2.obs.metrics.set_jobs(&stats),
                    Err(e) => tracing::debug!(error = %e, "job queue stats unavailable"),
                },
            }
        }
    });
}
