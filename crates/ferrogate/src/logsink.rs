//! Where log lines go: a buffer that a background thread (`ferrogate-log`) writes to stderr in
//! batches, every [`FLUSH_INTERVAL`] or as soon as a warning or error arrives.
//!
//! Why not `tracing_appender::non_blocking`: its writer thread blocks on a channel, so at one
//! request at a time every access-log line wakes it (a futex call on the request's thread) and
//! costs it one `write` syscall — together about a seventh of the gateway's CPU per request in
//! the overhead benchmark. Here a line is one short lock and an append; the thread wakes on its
//! own timer and writes everything that piled up in one syscall.
//!
//! Invariants:
//! - Lines are never dropped: when [`MAX_BUFFERED`] bytes wait, the logging thread waits for the
//!   writer (as `non_blocking` with `lossy(false)` did) rather than lose a line or grow without
//!   bound.
//! - Warnings and errors are written at once, and [`FlushGuard`]'s drop writes everything left
//!   before the process exits; what a crash can lose is at most one interval of info lines.
//! - One line is one `write` call on the buffer: the fmt layer formats a whole event first.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an info line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Bytes buffered before the writer is woken early.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes buffered before logging threads wait for the writer.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// A warning or error waits: write now.
    urgent: bool,
    stop: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer thread (urgent line, high water, stop).
    wake: Condvar,
    /// Wakes logging threads waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A thread that panicked while holding the lock left whole lines behind: keep going.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` the fmt layer logs through.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Stops the writer thread after writing everything buffered, when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread over `out`.
pub fn spawn(out: impl Write + Send + 'static) -> io::Result<(LogSink, FlushGuard)> {
    let shared = Arc::new(Shared { buffer: Mutex::default(), wake: Condvar::new(), room: Condvar::new() });
    let writer_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new().name("ferrogate-log".into()).spawn(move || run(&writer_shared, out))?;
    Ok((LogSink { shared: Arc::clone(&shared) }, FlushGuard { shared, thread: Some(thread) }))
}

fn run(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        let mut buf = shared.lock();
        if !(buf.stop || buf.urgent || buf.bytes.len() >= HIGH_WATER) {
            buf = shared
                .wake
                .wait_timeout_while(buf, FLUSH_INTERVAL, |b| !(b.stop || b.urgent || b.bytes.len() >= HIGH_WATER))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        std::mem::swap(&mut buf.bytes, &mut spare);
        buf.urgent = false;
        let stop = buf.stop;
        drop(buf);
        shared.room.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failing stderr; the lines are gone either way.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if spare.capacity() > HIGH_WATER * 4 {
                spare.shrink_to(HIGH_WATER);
            }
        }
        if stop && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's writer: `urgent` for warnings and errors.
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &self.sink.shared;
        let mut buf = shared.lock();
        while !buf.stop && !buf.bytes.is_empty() && buf.bytes.len() + line.len() > MAX_BUFFERED {
            shared.wake.notify_one();
            buf = shared.room.wait(buf).unwrap_or_else(PoisonError::into_inner);
        }
        let before = buf.bytes.len();
        buf.bytes.extend_from_slice(line);
        let crossed = before < HIGH_WATER && buf.bytes.len() >= HIGH_WATER;
        let wake = (self.urgent && !buf.urgent) || crossed || buf.stop;
        buf.urgent |= self.urgent;
        drop(buf);
        if wake {
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { sink: self, urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter { sink: self, urgent: *meta.level() <= Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Instant;

    use super::*;

    /// A `Write` the test can read back, counting write calls.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0.extend_from_slice(b);
            g.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    fn line(sink: &LogSink, level: Level, text: &str) {
        let mut w = LineWriter { sink, urgent: level <= Level::WARN };
        w.write_all(text.as_bytes()).unwrap();
    }

    fn wait_for(cap: &Capture, text: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if cap.text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn info_lines_are_batched_into_one_write() {
        let cap = Capture::default();
        let (sink, guard) = spawn(cap.clone()).unwrap();
        for i in 0..100 {
            line(&sink, Level::INFO, &format!("line {i}\n"));
        }
        assert!(wait_for(&cap, "line 99\n", FLUSH_INTERVAL * 4));
        // Written within an interval or two, in far fewer calls than lines.
        assert!(cap.writes() <= 2, "{} writes", cap.writes());
        drop(guard);
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(cap.text(), expected);
    }

    #[test]
    fn a_warning_is_written_at_once() {
        let cap = Capture::default();
        let (sink, _guard) = spawn(cap.clone()).unwrap();
        // Let the writer go to sleep on its interval first.
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        line(&sink, Level::INFO, "before\n");
        line(&sink, Level::WARN, "careful\n");
        assert!(wait_for(&cap, "before\ncareful\n", FLUSH_INTERVAL / 2), "not written promptly");
        assert!(t.elapsed() < FLUSH_INTERVAL);
    }

    #[test]
    fn drop_writes_everything_left() {
        let cap = Capture::default();
        let (sink, guard) = spawn(cap.clone()).unwrap();
        line(&sink, Level::INFO, "last words\n");
        drop(guard);
        assert_eq!(cap.text(), "last words\n");
    }

    #[test]
    fn a_full_buffer_makes_loggers_wait_not_drop() {
        /// Slow output: each write takes a while, so the buffer fills.
        #[derive(Clone, Default)]
        struct Slow(Capture);
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(b)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let slow = Slow::default();
        let (sink, guard) = spawn(slow.clone()).unwrap();
        let chunk = "x".repeat(64 * 1024 - 1) + "\n";
        let n = 3 * MAX_BUFFERED / chunk.len();
        for _ in 0..n {
            line(&sink, Level::INFO, &chunk);
        }
        drop(guard);
        assert_eq!(slow.0.text().len(), n * chunk.len());
    }
}
