//! The usage ledger's writer: request paths hand rows to a bounded channel without waiting; one
//! task writes them in batches (every `flush_interval`, or as soon as `max_batch` rows wait), one
//! transaction per batch. A writer that has fallen behind takes the backlog with its next batch,
//! up to `catch_up_batch` rows, so catching up costs few writes.
//!
//! Invariants:
//! - [`LedgerSender::record`] never blocks or awaits: a full channel drops the row, counts it and
//!   logs (once at the first drop, then a summary per interval) — the request path never stalls
//!   on the database.
//! - A failed batch is retried with exponential backoff, never dropped silently; each attempt
//!   is bounded by `write_timeout`. Retries are harmless: the store skips row ids it has (each row
//!   carries its server-made id from the moment it is built), so a batch that committed before its
//!   timeout fired is not written twice.
//! - A batch the database rejects (not a transient error) is retried row by row after a few
//!   attempts, so one bad row cannot block or lose the others; rows that still fail are logged
//!   and counted as lost.
//! - [`LedgerWriter::shutdown`] stops intake, writes everything queued, and returns; against a
//!   failing store it keeps retrying for at most `shutdown_timeout`, then reports what was lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::spool::Spool;
use super::{StoreError, UsageRecord, UsageStore};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Rows the channel holds; large, so only a long store outage fills it.
    pub capacity: usize,
    /// Rows per batch: a full batch is written at once.
    pub max_batch: usize,
    /// Rows per batch while the writer is behind: what waits in the channel is taken with the
    /// batch, up to this many, and written in one transaction — a backlog costs one round trip
    /// (and one commit) per this many rows, not per `max_batch`.
    pub catch_up_batch: usize,
    /// Longest a row waits before its batch is written.
    pub flush_interval: Duration,
    /// First retry delay after a failed write; doubles per failure.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Bound on one write attempt (a hung database counts as a failure, then a retry).
    pub write_timeout: Duration,
    /// How long [`LedgerWriter::shutdown`] keeps retrying a failing store.
    pub shutdown_timeout: Duration,
    /// The crash spool every row is appended to first (`None`: rows in memory only).
    pub spool: Option<Arc<Spool>>,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_batch: 500,
            catch_up_batch: 16_384,
            flush_interval: Duration::from_secs(1),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            spool: None,
        }
    }
}

/// Writes that fail with a non-transient error this many times are retried row by row.
const BATCH_ATTEMPTS_BEFORE_SPLIT: u32 = 3;

/// Counts since start, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Rows taken into the channel.
    pub accepted: u64,
    /// Rows written to the store.
    pub written: u64,
    /// Rows the store already had (the same row id, e.g. a retried batch that had committed): not
    /// written again.
    pub duplicates: u64,
    /// Rows refused because the channel was full (or the writer had shut down).
    pub dropped: u64,
    /// Rows given up on: rejected by the database row by row, or still failing at shutdown.
    pub lost: u64,
    /// Failed write attempts that were retried.
    pub retries: u64,
    /// Batches written at normal priority because the idle-priority writer was behind.
    pub escalated: u64,
    /// Unix ms at which the oldest row not yet written was taken off the channel; 0 when the
    /// writer holds nothing (the write lag is now minus this).
    pub pending_since_unix_ms: u64,
}

impl LedgerStats {
    /// Rows accepted and not yet written, skipped or given up on.
    pub fn pending(&self) -> u64 {
        self.accepted.saturating_sub(self.written + self.duplicates + self.lost)
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    written: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    retries: AtomicU64,
    escalated: AtomicU64,
    pending_since_unix_ms: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LedgerStats {
        LedgerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            escalated: self.escalated.load(Ordering::Relaxed),
            pending_since_unix_ms: self.pending_since_unix_ms.load(Ordering::Relaxed),
        }
    }

    /// Marks the start of a batch (its first row), for the write-lag gauge.
    fn batch_started(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX).max(1);
        let _ = self.pending_since_unix_ms.compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct LedgerSender {
    tx: mpsc::Sender<UsageRecord>,
    counters: Arc<Counters>,
    spool: Option<Arc<Spool>>,
}

impl LedgerSender {
    /// Queues a row; `false` if it was dropped (channel full, or the writer shut down).
    pub fn record(&self, row: UsageRecord) -> bool {
        let Some(spool) = &self.spool else { return self.send(row) };
        // Spooled first: a row the channel cannot take survives in the spool.
        let line = Spool::encode(&row);
        spool.append(line, || self.send(row))
    }

    fn send(&self, row: UsageRecord) -> bool {
        match self.tx.try_send(row) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(row) | TrySendError::Closed(row)) => {
                if self.counters.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(request_id = %row.request_id, "usage ledger full or closed: dropping usage rows");
                }
                false
            }
        }
    }

    /// Counts since start.
    pub fn stats(&self) -> LedgerStats {
        self.counters.snapshot()
    }
}

/// Owns the writer task. Dropping it without [`LedgerWriter::shutdown`] leaves the task running
/// until every [`LedgerSender`] is gone.
#[derive(Debug)]
pub struct LedgerWriter {
    sender: LedgerSender,
    stop: CancellationToken,
    task: Task,
}

/// Where the writer runs.
#[derive(Debug)]
enum Task {
    /// A task on the caller's runtime.
    Spawned(JoinHandle<()>),
    /// A thread of its own; the receiver completes when the writer has finished.
    Thread(oneshot::Receiver<()>),
}

/// Opens the store the writer uses, on the writer's own thread (see
/// [`LedgerWriter::spawn_on_thread`]).
pub type OpenStore =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<Arc<dyn UsageStore>, String>> + Send>> + Send>;

impl LedgerWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(store: Arc<dyn UsageStore>, config: LedgerConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let config_spool = config.spool.clone();
        let worker = Worker {
            store,
            config,
            counters: Arc::clone(&counters),
            stop: stop.clone(),
            deadline: None,
            escalate: None,
            settled: 0,
            stranded: false,
        };
        let task = Task::Spawned(tokio::spawn(worker.run(rx)));
        let spool = config_spool;
        Self { sender: LedgerSender { tx, counters, spool }, stop, task }
    }

    /// Starts the writer on a thread of its own (`ferrogate-ledger`, a single-threaded runtime,
    /// idle CPU priority) over a store that `open` connects there; resolves once it is open.
    /// `fallback` is the store to write through, on the caller's runtime (normal priority),
    /// whenever the writer falls behind.
    ///
    /// Why: a batch write is CPU work — binding hundreds of parameters, and SQLite's own work on
    /// its connection's thread. On the request runtime, or merely at the same priority, it
    /// competes with request handling for the core, and the kernel lets it run out its time
    /// slice before a woken request worker gets the CPU back: a latency tail of about a
    /// millisecond at every flush (measured: added p99 at c=1 rose from ~140 µs to ~700 µs).
    /// At `SCHED_IDLE` (Linux; the connection's SQLite thread, spawned from this thread,
    /// inherits it) the writer uses only CPU time nobody else wants, and any request preempts
    /// it at once.
    ///
    /// An idle-priority thread starves on a saturated machine, and the ledger must not fall
    /// behind: once rows in hand have waited half a flush interval, batches are written
    /// through `fallback` on the caller's runtime at normal priority until the backlog is gone,
    /// each taking up to `catch_up_batch` waiting rows (the idle thread still hands each one
    /// over, and gets the CPU for that only now and then).
    /// Writes stay one at a time, so the two connections never contend for SQLite's lock.
    pub async fn spawn_on_thread(
        open: OpenStore,
        fallback: Arc<dyn UsageStore>,
        config: LedgerConfig,
    ) -> Result<Self, String> {
        let escalate = Escalation { runtime: tokio::runtime::Handle::current(), store: fallback };
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let spool = config.spool.clone();
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let (opened_tx, opened_rx) = oneshot::channel::<Result<(), String>>();
        let (done_tx, done_rx) = oneshot::channel();
        let (worker_counters, worker_stop) = (Arc::clone(&counters), stop.clone());
        std::thread::Builder::new()
            .name("ferrogate-ledger".into())
            .spawn(move || {
                crate::background::idle_priority("usage ledger");
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = opened_tx.send(Err(format!("cannot start the ledger writer's runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let store = match open().await {
                        Ok(store) => store,
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = opened_tx.send(Ok(()));
                    let worker = Worker {
                        store,
                        config,
                        counters: worker_counters,
                        stop: worker_stop,
                        deadline: None,
                        escalate: Some(escalate),
                        settled: 0,
                        stranded: false,
                    };
                    worker.run(rx).await;
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the ledger writer's thread: {e}"))?;
        match opened_rx.await {
            Ok(Ok(())) => Ok(Self { sender: LedgerSender { tx, counters, spool }, stop, task: Task::Thread(done_rx) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the ledger writer's thread ended before its store was open".into()),
        }
    }

    /// A handle for request paths.
    pub fn sender(&self) -> LedgerSender {
        self.sender.clone()
    }

    /// Queues a row; see [`LedgerSender::record`].
    pub fn record(&self, row: UsageRecord) -> bool {
        self.sender.record(row)
    }

    /// Counts since start.
    pub fn stats(&self) -> LedgerStats {
        self.sender.stats()
    }

    /// Stops intake (later `record` calls drop), writes everything queued and returns the final
    /// counts.
    pub async fn shutdown(self) -> LedgerStats {
        self.stop.cancel();
        let finished = match self.task {
            Task::Spawned(handle) => handle.await.map_err(|e| e.to_string()),
            Task::Thread(done) => done.await.map_err(|_| "its thread ended abnormally".to_owned()),
        };
        if let Err(e) = finished {
            tracing::error!(error = %e, "usage ledger writer task failed");
        }
        let stats = self.sender.stats();
        tracing::info!(
            accepted = stats.accepted,
            written = stats.written,
            duplicates = stats.duplicates,
            dropped = stats.dropped,
            lost = stats.lost,
            retries = stats.retries,
            escalated = stats.escalated,
            "usage ledger flushed"
        );
        stats
    }
}

/// Where a writer on an idle-priority thread writes while it is behind.
struct Escalation {
    runtime: tokio::runtime::Handle,
    store: Arc<dyn UsageStore>,
}

struct Worker {
    store: Arc<dyn UsageStore>,
    config: LedgerConfig,
    counters: Arc<Counters>,
    stop: CancellationToken,
    /// Set once shutdown starts: retries end here.
    deadline: Option<Instant>,
    /// Set on an idle-priority writer: the normal-priority path for when it is behind.
    escalate: Option<Escalation>,
    /// Rows settled so far (written, duplicates, rejected row by row), in channel order: what
    /// the spool may forget.
    settled: u64,
    /// Rows given up at the shutdown deadline: their spool is kept for the next start.
    stranded: bool,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<UsageRecord>) {
        let max_batch = self.config.max_batch.max(1);
        let mut batch = Vec::with_capacity(max_batch);
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reported_drops = 0;
        // When the oldest row in hand was taken off the channel.
        let mut since: Option<Instant> = None;
        loop {
            let room = max_batch.saturating_sub(batch.len()).max(1); // a full batch is flushed at once
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                n = rx.recv_many(&mut batch, room) => {
                    if n == 0 {
                        break; // every sender is gone
                    }
                    self.counters.batch_started();
                    since.get_or_insert_with(Instant::now);
                    if batch.len() >= max_batch {
                        let behind = self.take_backlog(since, &mut rx, &mut batch).await;
                        self.flush(&mut batch, behind).await;
                        since = None;
                    }
                }
                _ = tick.tick() => {
                    reported_drops = self.report_drops(reported_drops);
                    if !batch.is_empty() {
                        let behind = self.take_backlog(since, &mut rx, &mut batch).await;
                        self.flush(&mut batch, behind).await;
                        since = None;
                    }
                }
            }
        }
        // Shutdown: refuse new rows, then write what is queued.
        self.start_deadline();
        rx.close();
        let catch_up = self.config.catch_up_batch.max(max_batch);
        loop {
            let room = catch_up.saturating_sub(batch.len());
            if room > 0 && rx.recv_many(&mut batch, room).await == 0 && batch.is_empty() {
                break;
            }
            // Shutdown waits on this: never at idle priority.
            self.flush(&mut batch, true).await;
        }
        self.report_drops(reported_drops);
        match &self.config.spool {
            Some(spool) if !self.stranded => spool.finish(self.settled),
            Some(_) => tracing::warn!("usage rows the store did not take stay in the ledger spool for the next start"),
            None => {}
        }
    }

    /// Whether the batch must be written at normal priority (see [`Escalation`]): its oldest
    /// row has waited half a flush interval, or a quarter of the channel is full. At high rates
    /// batches fill long before that and stay at idle priority (the latency tail is a high-rate
    /// effect); at low rates a batch written by the interval's tick costs little CPU at normal
    /// priority. Either way every row is written within about one flush interval, also on a
    /// saturated machine where the idle-priority thread would starve — the crash-loss bound.
    fn behind(&self, since: Option<Instant>, rx: &mpsc::Receiver<UsageRecord>) -> bool {
        let waited = since.is_some_and(|t| t.elapsed() >= self.config.flush_interval / 2);
        waited || rx.len() >= self.config.capacity / 4
    }

    /// Whether the writer is [behind](Worker::behind); if so, adds what waits in the channel to
    /// the batch, up to `catch_up_batch` rows, so the backlog goes out in few large writes. One
    /// write per `max_batch` rows cannot keep up with a saturated core: each is a round trip
    /// through the idle-priority thread, which runs only when the core has nothing else to do.
    async fn take_backlog(
        &self,
        since: Option<Instant>,
        rx: &mut mpsc::Receiver<UsageRecord>,
        batch: &mut Vec<UsageRecord>,
    ) -> bool {
        if !self.behind(since, rx) {
            return false;
        }
        let room = self.config.catch_up_batch.saturating_sub(batch.len());
        // Returns at once: this task is the only receiver, and the channel is not empty.
        if room > 0 && !rx.is_empty() {
            rx.recv_many(batch, room).await;
        }
        true
    }

    fn start_deadline(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.config.shutdown_timeout);
        }
    }

    fn report_drops(&self, reported: u64) -> u64 {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            tracing::warn!(dropped = dropped - reported, total = dropped, "usage rows dropped: ledger channel full");
        }
        dropped
    }

    /// Writes the batch and empties it: retried until it succeeds, is split row by row after
    /// repeated non-transient failures, or the shutdown deadline passes. `urgent`: write at
    /// normal priority (see [`Escalation`]).
    async fn flush(&mut self, batch: &mut Vec<UsageRecord>, urgent: bool) {
        // Shared with an escalated write's task rather than copied (a catch-up batch is large).
        let rows = Arc::new(std::mem::take(batch));
        self.write_until_settled(&rows, urgent).await;
        *batch = Arc::unwrap_or_clone(rows);
        batch.clear();
        // A catch-up batch's capacity is not kept while the writer is idle.
        batch.shrink_to(self.config.max_batch);
        self.counters.pending_since_unix_ms.store(0, Ordering::Relaxed);
    }

    /// [`Worker::flush`]'s retries; counts the rows as settled or lost.
    async fn write_until_settled(&mut self, batch: &Arc<Vec<UsageRecord>>, urgent: bool) {
        let mut delay = self.config.retry_initial;
        let mut permanent_failures = 0;
        loop {
            let attempt = if urgent { self.write_urgently(batch).await } else { self.write(batch).await };
            let error = match attempt {
                Ok(()) => break,
                Err(e) => e,
            };
            if !error.retryable() {
                permanent_failures += 1;
                if permanent_failures >= BATCH_ATTEMPTS_BEFORE_SPLIT {
                    self.write_row_by_row(batch).await;
                    break;
                }
            }
            if self.deadline.is_some_and(|d| Instant::now() + delay > d) {
                Counters::add(&self.counters.lost, batch.len());
                self.stranded = true;
                let kept = self.config.spool.is_some();
                tracing::error!(error = %error, lost = batch.len(), kept_in_spool = kept, "usage ledger: store still failing at shutdown");
                return;
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error, rows = batch.len(), retry_in_ms = delay.as_millis() as u64, "usage ledger write failed, retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stop.cancelled(), if self.deadline.is_none() => self.start_deadline(),
            }
            delay = (delay * 2).min(self.config.retry_max);
        }
        self.settled += batch.len() as u64;
        if let Some(spool) = &self.config.spool {
            spool.settled(self.settled);
        }
    }

    /// One attempt, bounded in time; counts what was written.
    async fn write(&self, batch: &[UsageRecord]) -> Result<(), StoreError> {
        let inserted = tokio::time::timeout(self.config.write_timeout, self.store.insert_usage(batch))
            .await
            .map_err(|elapsed| StoreError::Unavailable(Box::new(elapsed)))??;
        self.count_written(batch.len(), inserted);
        Ok(())
    }

    /// [`Worker::write`] through the escalation store on its runtime (normal priority), when
    /// there is one.
    async fn write_urgently(&self, batch: &Arc<Vec<UsageRecord>>) -> Result<(), StoreError> {
        let Some(escalate) = &self.escalate else { return self.write(batch).await };
        self.counters.escalated.fetch_add(1, Ordering::Relaxed);
        let (store, rows, limit) = (Arc::clone(&escalate.store), Arc::clone(batch), self.config.write_timeout);
        let task = escalate.runtime.spawn(async move { tokio::time::timeout(limit, store.insert_usage(&rows)).await });
        let inserted = task
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string().into()))?
            .map_err(|elapsed| StoreError::Unavailable(Box::new(elapsed)))??;
        self.count_written(batch.len(), inserted);
        Ok(())
    }

    fn count_written(&self, rows: usize, inserted: u64) {
        let inserted = usize::try_from(inserted).unwrap_or(usize::MAX).min(rows);
        Counters::add(&self.counters.written, inserted);
        Counters::add(&self.counters.duplicates, rows - inserted);
    }

    async fn write_row_by_row(&self, batch: &[UsageRecord]) {
        for row in batch {
            if let Err(e) = self.write(std::slice::from_ref(row)).await {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, row_id = %row.id, request_id = %row.request_id, "usage row rejected by the store, lost");
            }
        }
    }
}
