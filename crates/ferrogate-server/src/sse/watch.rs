//! The stall watch of streamed responses. A stream is its response body, polled by hyper as the
//! client takes frames; a client that stays connected but reads nothing fills the socket's and
//! hyper's buffers, after which hyper stops polling the body — so nothing in the stream itself
//! can notice. One sweeper task per process looks at every open stream a few times per write
//! timeout and cuts one whose last frame has been waiting longer than that: its upstream stream
//! and lease are dropped (cancelling the upstream, freeing the slot) and it settles as
//! `client_stalled`.
//!
//! Invariants: the sweeper runs only while streams are open (started by the first, ended when
//! none is left, also when its runtime goes away); it holds streams weakly, so a stream whose
//! client left is freed at once, never kept for the sweep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// A stream the sweeper can watch.
pub(crate) trait Watched: Send + Sync {
    /// Since when its last frame waits for the client.
    fn waiting(&self) -> &Waiting;
    /// Drops the stream's upstream work and settles it as `client_stalled`.
    fn cut(&self);
}

/// When a stream last handed a frame to hyper and has not been asked for the next one since.
/// hyper asks again at once unless its buffers are full: a frame waiting past the write timeout
/// means the client stopped reading.
pub(crate) struct Waiting {
    /// Milliseconds after the watch's epoch, plus one; 0: not waiting.
    since: AtomicU64,
    epoch: Instant,
    timeout: Duration,
}

impl Waiting {
    /// The body handed a frame over now.
    pub(crate) fn handed(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.since.store(ms + 1, Ordering::Relaxed);
    }

    /// hyper asked for the next frame: nothing is waiting.
    pub(crate) fn asked(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    fn overdue(&self, now_ms: u64) -> bool {
        match self.since.load(Ordering::Relaxed) {
            0 => false,
            since => now_ms.saturating_sub(since - 1) > u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// The open streams of the process and whether a sweeper runs.
pub(crate) struct Streams {
    epoch: Instant,
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    streams: Vec<Weak<dyn Watched>>,
    sweeping: bool,
    /// The shortest write timeout among them: the sweep's pace.
    shortest: Option<Duration>,
}

impl Default for Streams {
    fn default() -> Self {
        Self { epoch: Instant::now(), inner: Mutex::new(Open::default()) }
    }
}

impl Streams {
    /// A waiting mark for a stream cut after `timeout` without a client read.
    pub(crate) fn waiting(&self, timeout: Duration) -> Waiting {
        Waiting { since: AtomicU64::new(0), epoch: self.epoch, timeout }
    }

    /// Watches `stream` (weakly); starts the sweeper if none runs.
    pub(crate) fn watch(self: &Arc<Self>, stream: &Arc<dyn Watched>) {
        let timeout = stream.waiting().timeout;
        let mut open = self.lock();
        open.streams.push(Arc::downgrade(stream));
        open.shortest = Some(open.shortest.map_or(timeout, |s| s.min(timeout)));
        if !open.sweeping && tokio::runtime::Handle::try_current().is_ok() {
            open.sweeping = true;
            tokio::spawn(sweep(Arc::clone(self)));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One look at every stream: forgets the finished ones, returns the overdue ones and the
    /// next pause (`None`: nothing left to watch, the sweeper ends).
    fn sweep_once(&self) -> (Vec<Arc<dyn Watched>>, Option<Duration>) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut open = self.lock();
        let mut overdue = Vec::new();
        open.streams.retain(|w| {
            let Some(stream) = w.upgrade() else { return false };
            if stream.waiting().overdue(now_ms) {
                overdue.push(stream);
                return false;
            }
            true
        });
        if open.streams.is_empty() {
            open.sweeping = false;
            open.shortest = None;
            return (overdue, None);
        }
        let pace = open.shortest.map_or(MAX_PACE, |t| (t / 4).clamp(MIN_PACE, MAX_PACE));
        (overdue, Some(pace))
    }
}

/// The sweep's pace: a quarter of the shortest write timeout, within these bounds.
const MIN_PACE: Duration = Duration::from_millis(100);
const MAX_PACE: Duration = Duration::from_secs(1);

/// Sweeps until no stream is left to watch.
async fn sweep(streams: Arc<Streams>) {
    // A runtime shut down with streams open drops this task: the next stream starts another.
    let mut running = Sweeping(Some(Arc::clone(&streams)));
    loop {
        let (overdue, pace) = streams.sweep_once();
        for stream in overdue {
            stream.cut();
        }
        match pace {
            Some(pace) => tokio::time::sleep(pace).await,
            None => {
                // `sweep_once` marked the sweeper gone under the lock; a stream watched since
                // may already have started the next one, which this must not mark gone too.
                running.0 = None;
                return;
            }
        }
    }
}

/// Marks the sweeper gone when its task is dropped before it ended by itself.
struct Sweeping(Option<Arc<Streams>>);

impl Drop for Sweeping {
    fn drop(&mut self) {
        if let Some(streams) = self.0.take() {
            streams.lock().sweeping = false;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicBool;

    use super::*;

    struct Probe(Waiting, AtomicBool);

    impl Watched for Probe {
        fn waiting(&self) -> &Waiting {
            &self.0
        }

        fn cut(&self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_left_waiting_past_the_timeout_is_cut_and_one_taken_in_time_is_not() {
        let streams = Arc::new(Streams::default());
        let probe = || Arc::new(Probe(streams.waiting(Duration::from_secs(1)), AtomicBool::new(false)));
        let (stalled, reading) = (probe(), probe());
        let (s1, s2): (Arc<dyn Watched>, Arc<dyn Watched>) = (stalled.clone(), reading.clone());
        streams.watch(&s1);
        streams.watch(&s2);
        stalled.0.handed();
        for _ in 0..20 {
            reading.0.handed();
            tokio::time::sleep(Duration::from_millis(100)).await;
            reading.0.asked();
        }
        assert!(stalled.1.load(Ordering::SeqCst), "the stream whose frame waited 2 s was not cut");
        assert!(!reading.1.load(Ordering::SeqCst), "a stream read in time was cut");
        // Finished streams are forgotten and the sweeper ends with the last.
        drop((s1, s2, stalled, reading));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!streams.lock().sweeping);
        assert!(streams.lock().streams.is_empty());
    }
}
