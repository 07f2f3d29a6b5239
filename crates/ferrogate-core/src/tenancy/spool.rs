//! The usage ledger's crash spool: every row handed to the ledger is first appended to a local
//! file (one JSON line, one `write` call, no user-space buffer), so a row survives a SIGKILL of
//! the process between the response and the batch that writes it to the database. At start, the
//! segments of a process that is gone are read back and their rows written again (the store
//! skips row ids it has: replay is idempotent), then deleted.
//!
//! Segments: `ledger-<pid>-<instance>-<n>.spool` in the spool directory, each locked (`flock`) by the process
//! that writes it, so a live gateway sharing the directory is never replayed or deleted by
//! another. A segment is rotated when it outgrows [`SEGMENT_BYTES`] and deleted once every row
//! sent through it is settled (written, a duplicate, or rejected by the database); a segment that
//! holds a row the channel dropped (full) is kept for the next start to replay.
//!
//! The bound: a process crash (SIGKILL, panic=abort, OOM kill) loses no row the ledger accepted —
//! the kernel holds the bytes. A machine crash may lose the rows not yet on disk (no `fsync` on the
//! request path); the database's own durability covers everything already written.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use super::UsageRecord;

/// A segment is rotated once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// One spool file.
struct Segment {
    path: PathBuf,
    file: File,
    bytes: AtomicU64,
    /// A row appended here was not taken by the channel: keep the file for a replay.
    dropped: AtomicBool,
}

/// A rotated segment, deletable once `settled` reaches `upto` (rows sent before its rotation).
struct Closed {
    path: PathBuf,
    upto: u64,
    keep: bool,
}

/// The spool of one process.
pub struct Spool {
    dir: PathBuf,
    current: RwLock<Segment>,
    /// Rows appended and sent to the channel since start (the channel's FIFO position).
    sent: AtomicU64,
    closed: Mutex<Vec<Closed>>,
    next: AtomicU64,
    /// This spool's part of its segments' names (several spools may live in one process).
    tag: String,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// What a previous run left behind.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The rows, in the order they were appended.
    pub rows: Vec<UsageRecord>,
    /// Files to delete once `rows` are back in the ledger.
    pub files: Vec<PathBuf>,
    /// Lines that did not parse (a torn last line on a full disk), skipped.
    pub unreadable: usize,
}

impl Recovered {
    /// Deletes the recovered files (after their rows were handed to the ledger again).
    pub fn remove(self) {
        for f in self.files {
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::warn!(path = %f.display(), error = %e, "cannot remove a replayed ledger spool file");
            }
        }
    }
}

impl Spool {
    /// Opens a fresh segment in `dir` (created if missing), and reads back the segments of
    /// processes that are gone.
    pub fn open(dir: &Path) -> std::io::Result<(Spool, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let recovered = recover(dir)?;
        let tag = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        let first = Self::segment(dir, &tag, 0)?;
        let spool = Spool {
            dir: dir.to_owned(),
            current: RwLock::new(first),
            sent: AtomicU64::new(0),
            closed: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            tag,
        };
        Ok((spool, recovered))
    }

    fn segment(dir: &Path, tag: &str, n: u64) -> std::io::Result<Segment> {
        let path = dir.join(format!("ledger-{tag}-{n}.spool"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.try_lock().map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        Ok(Segment { path, file, bytes: AtomicU64::new(0), dropped: AtomicBool::new(false) })
    }

    /// A row as one spool line (`None`: not serializable, which a `UsageRecord` always is).
    pub fn encode(row: &UsageRecord) -> Option<Vec<u8>> {
        match serde_json::to_vec(row) {
            Ok(mut line) => {
                line.push(b'\n');
                Some(line)
            }
            Err(e) => {
                tracing::error!(error = %e, "ledger spool: row not serializable");
                None
            }
        }
    }

    /// Appends `line` (from [`Spool::encode`]) in one write, then runs `send` (the channel's
    /// `try_send`) while no rotation can happen, so the channel receives rows in segment order.
    /// Returns what `send` returned.
    pub fn append(&self, line: Option<Vec<u8>>, send: impl FnOnce() -> bool) -> bool {
        let Ok(seg) = self.current.read() else { return send() };
        if let Some(line) = line {
            match (&seg.file).write_all(&line) {
                Ok(()) => {
                    seg.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, path = %seg.path.display(), "ledger spool write failed"),
            }
        }
        let sent = send();
        if sent {
            self.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            seg.dropped.store(true, Ordering::Relaxed);
        }
        sent
    }

    /// The writer settled rows up to `settled` (its running count, FIFO): deletes the rotated
    /// segments whose rows are all settled, and rotates the current one when it is large.
    pub fn settled(&self, settled: u64) {
        let large = self.current.read().is_ok_and(|s| s.bytes.load(Ordering::Relaxed) >= SEGMENT_BYTES);
        if large {
            self.rotate();
        }
        let Ok(mut closed) = self.closed.lock() else { return };
        closed.retain(|c| {
            if c.upto > settled {
                return true;
            }
            if c.keep {
                tracing::warn!(path = %c.path.display(), "ledger spool kept: it holds rows the ledger dropped");
            } else if let Err(e) = std::fs::remove_file(&c.path) {
                tracing::warn!(path = %c.path.display(), error = %e, "cannot remove a settled ledger spool file");
            }
            false
        });
    }

    /// Starts a new segment; the old one is deleted once its rows are settled.
    fn rotate(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let fresh = match Self::segment(&self.dir, &self.tag, n) {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot rotate the ledger spool"),
        };
        let Ok(mut cur) = self.current.write() else { return };
        let old = std::mem::replace(&mut *cur, fresh);
        // Under the write lock no append is half done: every row of `old` is counted in `sent`.
        let upto = self.sent.load(Ordering::Relaxed);
        drop(cur);
        let keep = old.dropped.load(Ordering::Relaxed);
        if let Ok(mut closed) = self.closed.lock() {
            closed.push(Closed { path: old.path, upto, keep });
        }
    }

    /// After a clean shutdown that settled `settled` rows: removes every segment whose rows are
    /// all in the database.
    pub fn finish(&self, settled: u64) {
        self.rotate();
        self.settled(settled);
        // The fresh segment `rotate` opened holds nothing.
        if let Ok(cur) = self.current.read()
            && cur.bytes.load(Ordering::Relaxed) == 0
        {
            let _ = std::fs::remove_file(&cur.path);
        }
        // Only when nothing is left in it (a kept segment, another process's).
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Reads every segment in `dir` whose writer is gone (its lock can be taken).
fn recover(dir: &Path) -> std::io::Result<Recovered> {
    let mut out = Recovered::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_segment = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ledger-"))
            && path.extension().is_some_and(|e| e == "spool");
        if !is_segment {
            continue;
        }
        let file = File::open(&path)?;
        if file.try_lock().is_err() {
            continue; // a live process writes it
        }
        for line in BufReader::new(&file).lines() {
            match line.ok().and_then(|l| serde_json::from_str::<UsageRecord>(&l).ok()) {
                Some(row) => out.rows.push(row),
                None => out.unreadable += 1,
            }
        }
        out.files.push(path);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(i: u32) -> UsageRecord {
        UsageRecord {
            id: UsageRecord::new_id(),
            request_id: format!("r{i}"),
            tenant_id: None,
            key_id: None,
            endpoint: "chat.completions".into(),
            model_requested: "m".into(),
            model_served: None,
            backend: None,
            prompt_tokens: u64::from(i),
            cached_prompt_tokens: 0,
            completion_tokens: 1,
            latency_ms: 1,
            ttft_ms: None,
            http_status: 200,
            error_type: None,
            streamed: false,
            cancelled: false,
            cache_hit: false,
            created_at_ms: 1,
        }
    }

    #[test]
    fn rows_of_a_dead_writer_are_recovered_and_a_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, rec) = Spool::open(dir.path()).unwrap();
        assert!(rec.rows.is_empty());
        let rows: Vec<_> = (0..5).map(row).collect();
        for r in &rows {
            assert!(spool.append(Spool::encode(r), || true));
        }
        // While this spool is alive (its segment locked), another opener leaves it alone.
        let (_other, seen) = Spool::open(dir.path()).unwrap();
        assert!(seen.rows.is_empty(), "a live segment must not be replayed");
        drop(spool); // the lock goes with the file: as if the process died
        drop(_other);
        let (_third, rec) = Spool::open(dir.path()).unwrap();
        assert_eq!(rec.rows, rows, "every appended row comes back, in order");
        rec.remove();
    }

    #[test]
    fn settled_segments_are_removed_and_ones_with_drops_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path()).unwrap();
        for i in 0..3 {
            spool.append(Spool::encode(&row(i)), || true);
        }
        spool.append(Spool::encode(&row(9)), || false); // the channel was full
        spool.rotate();
        spool.append(Spool::encode(&row(10)), || true);
        spool.settled(2); // not all of the first segment's 3 sent rows
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files(), 2);
        spool.settled(3); // settled, but it holds a dropped row: kept for the next start
        assert_eq!(files(), 2);
        spool.finish(4);
        assert_eq!(files(), 1, "only the segment with the dropped row is left");
        drop(spool);
        let (_s, rec) = Spool::open(dir.path()).unwrap();
        assert_eq!(rec.rows.len(), 4, "the kept segment is replayed whole (duplicates are skipped by the store)");
    }
}
