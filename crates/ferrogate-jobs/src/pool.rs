//! The worker pool: per kind, a loop that leases jobs while there is spare capacity and a free
//! slot, and runs each in a tracked task; graceful drain.
//!
//! Invariants: a kind never runs more than its concurrency at once on this instance; no lease
//! is taken while [`Capacity`] says no or after a drain started; `drain` returns only when
//! every job task ended (finished, or handed back at the deadline).

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::jobs::{JobQueue, LeaseRequest};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{KindWorkers, PoolConfig};
use crate::run::{RunCx, run_job};
use crate::runner::{Capacity, NoHooks, OnFinished, Runner};

/// A running worker pool. Dropping it does not stop it: call [`WorkerPool::drain`].
pub struct WorkerPool {
    /// Stops the lease loops.
    stop_leasing: CancellationToken,
    /// Stops running jobs (drain deadline passed).
    hard_stop: CancellationToken,
    loops: TaskTracker,
    jobs: TaskTracker,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool").field("running_jobs", &self.jobs.len()).finish_non_exhaustive()
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every running job finished before the deadline.
    Finished,
    /// The deadline passed: the jobs still running were stopped and handed back to the queue.
    HandedBack,
}

/// The parts every lease loop shares.
struct LoopCx {
    queue: Arc<dyn JobQueue>,
    capacity: Arc<dyn Capacity>,
    run: Arc<RunCx>,
    config: PoolConfig,
    stop: CancellationToken,
    wake: Arc<Notify>,
    jobs: TaskTracker,
}

impl WorkerPool {
    /// Starts one lease loop per configured kind on the current tokio runtime.
    pub fn start(
        queue: Arc<dyn JobQueue>,
        runner: Arc<dyn Runner>,
        capacity: Arc<dyn Capacity>,
        config: PoolConfig,
    ) -> WorkerPool {
        Self::start_with_hooks(queue, runner, capacity, config, Arc::new(NoHooks))
    }

    /// [`WorkerPool::start`], telling `finished` of every job that ends here.
    pub fn start_with_hooks(
        queue: Arc<dyn JobQueue>,
        runner: Arc<dyn Runner>,
        capacity: Arc<dyn Capacity>,
        config: PoolConfig,
        finished: Arc<dyn OnFinished>,
    ) -> WorkerPool {
        let (stop_leasing, hard_stop) = (CancellationToken::new(), CancellationToken::new());
        let (loops, jobs, wake) = (TaskTracker::new(), TaskTracker::new(), Arc::new(Notify::new()));
        let run = Arc::new(RunCx {
            queue: queue.clone(),
            runner,
            visibility_timeout: config.visibility_timeout,
            heartbeat_every: config.heartbeat_every,
            hard_stop: hard_stop.clone(),
            finished,
        });
        let cx = Arc::new(LoopCx {
            queue,
            capacity,
            run,
            config: config.clone(),
            stop: stop_leasing.clone(),
            wake: wake.clone(),
            jobs: jobs.clone(),
        });
        for kind in &config.kinds {
            loops.spawn(lease_loop(cx.clone(), *kind));
        }
        loops.close();
        WorkerPool { stop_leasing, hard_stop, loops, jobs, wake }
    }

    /// Wakes idle kinds to look for work now (call after enqueueing on this instance).
    pub fn notify(&self) {
        self.wake.notify_waiters();
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.jobs.len()
    }

    /// Stops leasing, lets running jobs finish until `deadline`, then stops the rest and hands
    /// them back to the queue (their attempt uncounted), and returns when all have ended.
    pub async fn drain(self, deadline: Duration) -> Drained {
        self.stop_leasing.cancel();
        self.loops.wait().await;
        self.jobs.close();
        if tokio::time::timeout(deadline, self.jobs.wait()).await.is_ok() {
            return Drained::Finished;
        }
        self.hard_stop.cancel();
        self.jobs.wait().await;
        Drained::HandedBack
    }
}

/// Leases jobs of one kind while a slot is free and capacity is spare.
async fn lease_loop(cx: Arc<LoopCx>, kind: KindWorkers) {
    let slots = Arc::new(Semaphore::new(kind.concurrency.max(1)));
    let request = |n: usize| LeaseRequest {
        worker_id: format!("{}/{}", cx.config.instance, kind.kind.as_str()),
        kinds: vec![kind.kind],
        max_jobs: u32::try_from(n).unwrap_or(u32::MAX),
        visibility_timeout: cx.config.visibility_timeout,
    };
    loop {
        let Some(first) = wait_for_slot(&cx, &slots).await else { return };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let leased = match cx.queue.lease(&request(permits.len())).await {
            Ok(leased) => leased,
            Err(e) => {
                tracing::warn!(kind = kind.kind.as_str(), error = %e, "job lease failed");
                Vec::new()
            }
        };
        if leased.is_empty() {
            drop(permits);
            if idle(&cx).await {
                return;
            }
            continue;
        }
        for job in leased {
            let Some(permit) = permits.pop() else { break };
            let run = cx.run.clone();
            cx.jobs.spawn(async move {
                run_job(&run, job).await;
                drop(permit);
            });
        }
    }
}

/// A free slot once capacity is spare; `None` when leasing stops.
async fn wait_for_slot(cx: &LoopCx, slots: &Arc<Semaphore>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let permit = tokio::select! {
        p = slots.clone().acquire_owned() => p.ok()?,
        _ = cx.stop.cancelled() => return None,
    };
    while !cx.capacity.has_spare() {
        tokio::select! {
            _ = tokio::time::sleep(cx.config.capacity_poll) => {}
            _ = cx.stop.cancelled() => return None,
        }
    }
    (!cx.stop.is_cancelled()).then_some(permit)
}

/// Waits a poll interval (or a wake); `true` when leasing stops.
async fn idle(cx: &LoopCx) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(cx.config.poll_interval) => false,
        _ = cx.wake.notified() => false,
        _ = cx.stop.cancelled() => true,
    }
}
