//! Per-deployment admission: at most `concurrency` requests run at once; up to `size` more wait
//! in a bounded queue for at most `max_wait`. Interactive requests are served before batch
//! requests, and no key keeps more than its fair share of a full queue.
//!
//! Invariants: a refusal is decided under one short lock and never waits (503 `queue_full` at
//! once); a [`Permit`] frees its slot on drop — success, error or cancellation — and hands it
//! straight to the next waiter, so a slot is never leaked nor left idle while someone waits; a
//! waiter that gives up (timeout, client gone) leaves the queue in its `Drop`.
//!
//! Fair share: when the queue is full, an arrival whose key holds fewer than
//! `size / keys waiting` places takes the newest place of the key holding the most (if that key
//! is above its share); that waiter is answered `queue_full` at once. An interactive arrival at
//! a full queue takes the newest batch waiter's place first.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Which waiters go first. A request's class comes from the client (`x-ferrogate-priority`) or
/// its key; batch jobs use [`Priority::Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "interactive" => Some(Priority::Interactive),
            "batch" => Some(Priority::Batch),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Priority::Interactive => 0,
            Priority::Batch => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Requests running at once (at least 1).
    pub concurrency: usize,
    /// Requests waiting at most; 0 = refuse at once when all slots are busy.
    pub size: usize,
    pub max_wait: Duration,
}

/// Why a request was not admitted. `retry_after` is the queue's own estimate of when a slot
/// frees up (recent service time × requests ahead), not a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the deployment's queue is full")]
    Full { retry_after: Duration },
    #[error("waited {waited:?} in the deployment's queue without getting a slot")]
    Timeout { waited: Duration, retry_after: Duration },
}

impl QueueError {
    pub fn retry_after(&self) -> Duration {
        match self {
            QueueError::Full { retry_after } | QueueError::Timeout { retry_after, .. } => *retry_after,
        }
    }
}

/// A point-in-time view, for `/ready` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub concurrency: usize,
    pub size: usize,
    pub running: usize,
    pub waiting_interactive: usize,
    pub waiting_batch: usize,
    /// Refused because the queue was full (including waiters displaced by fair share).
    pub rejected_full: u64,
    /// Gave up after `max_wait`.
    pub timed_out: u64,
}

impl QueueStats {
    /// Every slot busy and no room to wait: a new request would be refused with `queue_full`.
    pub fn is_full(&self) -> bool {
        self.running >= self.concurrency && self.waiting_interactive + self.waiting_batch >= self.size
    }
}

/// A cheap handle; clones share one queue.
#[derive(Clone)]
pub struct AdmissionQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    size: usize,
    max_wait: Duration,
    rejected_full: AtomicU64,
    timed_out: AtomicU64,
}

type Reply = Result<Permit, QueueError>;

struct Waiter {
    id: u64,
    key: Arc<str>,
    tx: oneshot::Sender<Reply>,
}

struct State {
    concurrency: usize,
    running: usize,
    next_id: u64,
    /// Index 0: interactive, 1: batch; oldest first.
    waiting: [VecDeque<Waiter>; 2],
    /// Waiters per key, for the fair share.
    per_key: HashMap<Arc<str>, usize>,
    /// Moving average of how long a permit is held (the service time), for Retry-After.
    service_ewma: Duration,
}

impl State {
    fn waiting_len(&self) -> usize {
        self.waiting[0].len() + self.waiting[1].len()
    }

    fn pop_next(&mut self) -> Option<Waiter> {
        let w = self.waiting[0].pop_front().or_else(|| self.waiting[1].pop_front())?;
        self.forget_key(&w.key);
        Some(w)
    }

    fn forget_key(&mut self, key: &Arc<str>) {
        if let Some(n) = self.per_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(key);
            }
        }
    }

    /// Time until a new arrival would get a slot: one service time per `concurrency` requests
    /// ahead of it, plus its own turn.
    fn estimate_wait(&self) -> Duration {
        let ahead = self.waiting_len() as u32 / self.concurrency.max(1) as u32 + 1;
        self.service_ewma.saturating_mul(ahead)
    }

    /// The waiter whose place an arrival of `key`/`prio` may take when the queue is full.
    fn victim(&self, key: &str, prio: Priority, size: usize) -> Option<(usize, usize)> {
        if prio == Priority::Interactive && !self.waiting[1].is_empty() {
            return Some((1, self.waiting[1].len() - 1));
        }
        let mine = self.per_key.get(key).copied().unwrap_or(0);
        let keys = self.per_key.len() + usize::from(mine == 0);
        let share = (size / keys.max(1)).max(1);
        if mine >= share {
            return None;
        }
        let (big, &count) = self.per_key.iter().max_by_key(|(_, n)| **n)?;
        if count <= share {
            return None;
        }
        // The newest waiter of that key, batch before interactive; a batch arrival never
        // displaces an interactive waiter.
        let classes: &[usize] = if prio == Priority::Batch { &[1] } else { &[1, 0] };
        for &class in classes {
            if let Some(pos) = self.waiting[class].iter().rposition(|w| w.key == *big) {
                return Some((class, pos));
            }
        }
        None
    }
}

enum Enter {
    Now(Permit),
    Wait(u64, oneshot::Receiver<Reply>),
}

impl AdmissionQueue {
    pub fn new(cfg: QueueConfig) -> Self {
        let state = State {
            concurrency: cfg.concurrency.max(1),
            running: 0,
            next_id: 0,
            waiting: [VecDeque::new(), VecDeque::new()],
            per_key: HashMap::new(),
            service_ewma: Duration::from_secs(1),
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                size: cfg.size,
                max_wait: cfg.max_wait,
                rejected_full: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
            }),
        }
    }

    /// Waits for a slot. `key` identifies the caller for the fair share (any stable string; all
    /// anonymous callers may share one). Cancel-safe: dropping the future leaves the queue.
    pub async fn acquire(&self, key: &str, prio: Priority) -> Result<Permit, QueueError> {
        let (id, rx) = match self.enter(key, prio)? {
            Enter::Now(p) => return Ok(p),
            Enter::Wait(id, rx) => (id, rx),
        };
        let started = Instant::now();
        let mut leave = LeaveOnDrop { shared: &self.shared, id: Some(id) };
        match tokio::time::timeout(self.shared.max_wait, rx).await {
            Ok(Ok(reply)) => {
                leave.id = None;
                reply
            }
            // The sender is dropped only with the queue itself.
            Ok(Err(_)) => Err(QueueError::Full { retry_after: self.lock().estimate_wait() }),
            Err(_) => {
                drop(leave);
                self.shared.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(QueueError::Timeout { waited: started.elapsed(), retry_after: self.lock().estimate_wait() })
            }
        }
    }

    fn enter(&self, key: &str, prio: Priority) -> Result<Enter, QueueError> {
        let mut st = self.lock();
        if st.running < st.concurrency && st.waiting_len() == 0 {
            st.running += 1;
            return Ok(Enter::Now(Permit::new(&self.shared)));
        }
        let mut displaced = None;
        if st.waiting_len() >= self.shared.size {
            match st.victim(key, prio, self.shared.size) {
                Some((class, pos)) => {
                    if let Some(w) = st.waiting[class].remove(pos) {
                        st.forget_key(&w.key);
                        displaced = Some(w);
                    }
                }
                None => {
                    self.shared.rejected_full.fetch_add(1, Ordering::Relaxed);
                    return Err(QueueError::Full { retry_after: st.estimate_wait() });
                }
            }
        }
        let id = st.next_id;
        st.next_id += 1;
        let key: Arc<str> = Arc::from(key);
        *st.per_key.entry(Arc::clone(&key)).or_insert(0) += 1;
        let (tx, rx) = oneshot::channel();
        st.waiting[prio.index()].push_back(Waiter { id, key, tx });
        let retry_after = st.estimate_wait();
        drop(st);
        if let Some(w) = displaced {
            self.shared.rejected_full.fetch_add(1, Ordering::Relaxed);
            let _ = w.tx.send(Err(QueueError::Full { retry_after }));
        }
        Ok(Enter::Wait(id, rx))
    }

    /// Changes the number of slots (e.g. once an engine reports how many it has); waiters get
    /// the new slots at once.
    pub fn set_concurrency(&self, n: usize) {
        let mut st = self.lock();
        st.concurrency = n.max(1);
        let mut grant = Vec::new();
        while st.running < st.concurrency {
            let Some(w) = st.pop_next() else { break };
            st.running += 1;
            grant.push(w);
        }
        drop(st);
        for w in grant {
            hand_over(&self.shared, w);
        }
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            concurrency: st.concurrency,
            size: self.shared.size,
            running: st.running,
            waiting_interactive: st.waiting[0].len(),
            waiting_batch: st.waiting[1].len(),
            rejected_full: self.shared.rejected_full.load(Ordering::Relaxed),
            timed_out: self.shared.timed_out.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives a slot (already counted in `running`) to `w`; if it is gone, to the next, and so on.
fn hand_over(shared: &Arc<Shared>, w: Waiter) {
    let mut next = Some(w);
    while let Some(w) = next.take() {
        match w.tx.send(Ok(Permit::new(shared))) {
            Ok(()) => return,
            Err(reply) => {
                // The waiter left between being popped and now: reuse its slot.
                if let Ok(mut p) = reply {
                    p.armed = false;
                }
                let mut st = lock(shared);
                next = st.pop_next();
                if next.is_none() {
                    st.running -= 1;
                }
            }
        }
    }
}

/// Removes a waiter that stopped waiting; if it was already granted a slot, the slot travels
/// back through the dropped `Permit`.
struct LeaveOnDrop<'a> {
    shared: &'a Arc<Shared>,
    id: Option<u64>,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut st = lock(self.shared);
        for class in 0..2 {
            if let Some(pos) = st.waiting[class].iter().position(|w| w.id == id)
                && let Some(w) = st.waiting[class].remove(pos)
            {
                st.forget_key(&w.key);
                return;
            }
        }
    }
}

/// One running slot of a deployment; freed (and handed to the next waiter) on drop.
pub struct Permit {
    shared: Arc<Shared>,
    since: Instant,
    armed: bool,
}

impl Permit {
    fn new(shared: &Arc<Shared>) -> Self {
        Self { shared: Arc::clone(shared), since: Instant::now(), armed: true }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let held = self.since.elapsed();
        let mut st = lock(&self.shared);
        // EWMA with weight 1/8: follows load changes within tens of requests.
        st.service_ewma = (st.service_ewma * 7 + held) / 8;
        let next = if st.running <= st.concurrency { st.pop_next() } else { None };
        if next.is_none() {
            st.running -= 1;
        }
        drop(st);
        if let Some(w) = next {
            hand_over(&self.shared, w);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    fn queue(concurrency: usize, size: usize, max_wait_ms: u64) -> AdmissionQueue {
        AdmissionQueue::new(QueueConfig { concurrency, size, max_wait: Duration::from_millis(max_wait_ms) })
    }

    /// Polls once; the future stays pinned for later polls.
    fn poll_once<F: Future>(f: &mut Pin<Box<F>>) -> Poll<F::Output> {
        let waker = futures::task::noop_waker();
        f.as_mut().poll(&mut Context::from_waker(&waker))
    }

    fn waiting(q: &AdmissionQueue) -> usize {
        let s = q.stats();
        s.waiting_interactive + s.waiting_batch
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_refuses_at_once_with_an_estimate() {
        let q = queue(1, 0, 1000);
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let t0 = Instant::now();
        let err = q.acquire("a", Priority::Interactive).await.err().unwrap();
        assert_eq!(t0.elapsed(), Duration::ZERO, "a refusal never waits");
        assert!(matches!(err, QueueError::Full { .. }));
        assert!(err.retry_after() > Duration::ZERO);
        drop(held);
        assert!(q.acquire("a", Priority::Interactive).await.is_ok(), "the slot came back");
        assert_eq!(q.stats().rejected_full, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_gets_the_slot_when_it_frees_and_times_out_otherwise() {
        let q = queue(1, 2, 500);
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.acquire("b", Priority::Interactive).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(waiting(&q), 1);
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let t0 = Instant::now();
        let err = q.acquire("b", Priority::Interactive).await.err().unwrap();
        assert!(matches!(err, QueueError::Timeout { .. }), "{err:?}");
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        assert_eq!((waiting(&q), q.stats().timed_out), (0, 1), "the timed-out waiter left");
        drop(held);
        assert_eq!(q.stats().running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn interactive_is_served_before_batch() {
        let q = queue(1, 4, 10_000);
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let mut batch = Box::pin(q.acquire("b", Priority::Batch));
        assert!(poll_once(&mut batch).is_pending());
        let mut inter = Box::pin(q.acquire("c", Priority::Interactive));
        assert!(poll_once(&mut inter).is_pending());
        drop(held);
        let p = match poll_once(&mut inter) {
            Poll::Ready(Ok(p)) => p,
            _ => panic!("interactive first"),
        };
        assert!(poll_once(&mut batch).is_pending());
        drop(p);
        assert!(matches!(poll_once(&mut batch), Poll::Ready(Ok(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn interactive_displaces_batch_from_a_full_queue() {
        let q = queue(1, 1, 10_000);
        let _held = q.acquire("a", Priority::Interactive).await.unwrap();
        let mut batch = Box::pin(q.acquire("b", Priority::Batch));
        assert!(poll_once(&mut batch).is_pending());
        let mut inter = Box::pin(q.acquire("c", Priority::Interactive));
        assert!(poll_once(&mut inter).is_pending());
        assert!(matches!(poll_once(&mut batch), Poll::Ready(Err(QueueError::Full { .. }))));
        assert_eq!(q.stats().waiting_interactive, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_cannot_keep_more_than_its_share_of_a_full_queue() {
        let q = queue(1, 4, 10_000);
        let _held = q.acquire("hog", Priority::Interactive).await.unwrap();
        let mut hog: Vec<_> = (0..4).map(|_| Box::pin(q.acquire("hog", Priority::Interactive))).collect();
        for f in &mut hog {
            assert!(poll_once(f).is_pending());
        }
        // The queue is full of one key; another key still gets in, displacing the hog's newest.
        let mut other = Box::pin(q.acquire("polite", Priority::Interactive));
        assert!(poll_once(&mut other).is_pending());
        assert!(matches!(poll_once(&mut hog[3]), Poll::Ready(Err(QueueError::Full { .. }))));
        let mut second = Box::pin(q.acquire("polite", Priority::Interactive));
        assert!(poll_once(&mut second).is_pending(), "share of 2 keys in 4 places is 2");
        // The polite key now holds its share (2 of 4): a third is refused, the hog keeps 2.
        let third = q.acquire("polite", Priority::Interactive).await;
        assert!(matches!(third, Err(QueueError::Full { .. })));
        for f in &mut hog[..2] {
            assert!(poll_once(f).is_pending());
        }
        assert_eq!(waiting(&q), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_arrival_never_displaces_interactive_waiters() {
        let q = queue(1, 2, 10_000);
        let _held = q.acquire("hog", Priority::Interactive).await.unwrap();
        let mut hog: Vec<_> = (0..2).map(|_| Box::pin(q.acquire("hog", Priority::Interactive))).collect();
        for f in &mut hog {
            assert!(poll_once(f).is_pending());
        }
        let batch = q.acquire("other", Priority::Batch).await;
        assert!(matches!(batch, Err(QueueError::Full { .. })));
        for f in &mut hog {
            assert!(poll_once(f).is_pending(), "still queued");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_and_its_slot_goes_on() {
        let q = queue(1, 2, 10_000);
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let mut gone = Box::pin(q.acquire("b", Priority::Interactive));
        assert!(poll_once(&mut gone).is_pending());
        let mut next = Box::pin(q.acquire("c", Priority::Interactive));
        assert!(poll_once(&mut next).is_pending());
        drop(gone);
        assert_eq!(waiting(&q), 1);
        drop(held);
        assert!(matches!(poll_once(&mut next), Poll::Ready(Ok(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_granted_slot_whose_waiter_left_passes_on() {
        let q = queue(1, 2, 10_000);
        let held = q.acquire("a", Priority::Interactive).await.unwrap();
        let mut first = Box::pin(q.acquire("b", Priority::Interactive));
        assert!(poll_once(&mut first).is_pending());
        let mut second = Box::pin(q.acquire("c", Priority::Interactive));
        assert!(poll_once(&mut second).is_pending());
        drop(held); // granted to `first`, which never looks at it
        drop(first);
        let Poll::Ready(Ok(p)) = poll_once(&mut second) else { panic!("the slot passed on") };
        assert_eq!(q.stats().running, 1);
        drop(p);
        assert_eq!(q.stats().running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_follows_the_service_time() {
        let q = queue(1, 0, 1000);
        for _ in 0..40 {
            let p = q.acquire("a", Priority::Interactive).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(p);
        }
        let _p = q.acquire("a", Priority::Interactive).await.unwrap();
        let ra = q.acquire("a", Priority::Interactive).await.err().unwrap().retry_after();
        assert!(ra > Duration::from_millis(2900) && ra <= Duration::from_secs(3), "{ra:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn more_slots_admit_waiters_at_once() {
        let q = queue(1, 4, 10_000);
        let _held = q.acquire("a", Priority::Interactive).await.unwrap();
        let mut w = Box::pin(q.acquire("b", Priority::Interactive));
        assert!(poll_once(&mut w).is_pending());
        q.set_concurrency(2);
        let Poll::Ready(Ok(_p)) = poll_once(&mut w) else { panic!("admitted") };
        assert_eq!(q.stats().running, 2);
    }
}
