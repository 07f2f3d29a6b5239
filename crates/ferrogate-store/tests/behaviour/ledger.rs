use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferrogate_core::tenancy::{
    GroupBy, KeyId, StoreError, TenantId, UsageQuery, UsageRecord, UsageRow, UsageStore, UsageSubject, UsageTotals,
};
use ferrogate_store::{DbKind, LedgerConfig, LedgerStats, LedgerWriter, OpenStore, Store};
use ferrogate_testkit::TestDatabase;
use tokio::sync::Semaphore;

use crate::harness::TestDb;
use crate::usage::{Row, record};

fn row(i: usize, tenant: &TenantId, key: &KeyId, prompt: u64) -> UsageRecord {
    let r = Row {
        tenant: Some(tenant),
        key: Some(key),
        model: "m",
        backend: Some("b"),
        at: 1_710_028_800_000 + i64::try_from(i).unwrap(),
        tokens: (prompt, 0, 1),
        status: 200,
        error: None,
        cancelled: false,
    };
    record(&format!("req-{i:05}"), r)
}

fn rows(n: usize) -> Vec<UsageRecord> {
    let (t, k) = (TenantId::generate(), KeyId::generate());
    (0..n).map(|i| row(i, &t, &k, 1)).collect()
}

/// Everything in the ledger, summed.
async fn stored(store: &dyn UsageStore) -> UsageTotals {
    let q = UsageQuery { from_ms: 0, to_ms: i64::MAX, group_by: GroupBy::Day, tenant: None, key: None };
    let rows: Vec<UsageRow> = store.query_usage(&q).await.unwrap();
    rows.iter().fold(UsageTotals::default(), |mut t, r| {
        t.requests += r.totals.requests;
        t.prompt_tokens += r.totals.prompt_tokens;
        t
    })
}

fn quick(config: LedgerConfig) -> LedgerConfig {
    LedgerConfig { retry_initial: Duration::from_millis(10), retry_max: Duration::from_millis(50), ..config }
}

pub async fn ledger_writes_every_request_exactly_once(db: &TestDb) {
    let (t, k) = (TenantId::generate(), KeyId::generate());
    let mut sent = Vec::new();
    for i in 0..1000 {
        sent.push(row(i, &t, &k, 1));
        if i % 5 == 4 {
            // A repeat of a recent row (same row id, as a retry sends it) with other numbers:
            // must not be written.
            sent.push(row(i - 2, &t, &k, 1000));
        }
    }
    // Batches of 64; no timed flush for an hour: the tail is written by shutdown alone.
    let config = LedgerConfig { max_batch: 64, flush_interval: Duration::from_secs(3600), ..LedgerConfig::default() };
    let writer = LedgerWriter::spawn(Arc::new(db.store.clone()), config);
    for r in &sent {
        assert!(writer.record(r.clone()));
    }
    let stats = writer.shutdown().await;
    let expected = LedgerStats {
        accepted: 1200,
        written: 1000,
        duplicates: 200,
        dropped: 0,
        lost: 0,
        retries: 0,
        escalated: 0,
        pending_since_unix_ms: 0,
    };
    assert_eq!(stats, expected);

    let totals = stored(&db.store).await;
    assert_eq!((totals.requests, totals.prompt_tokens), (1000, 1000), "one row per row id, the first one");
    assert_eq!(db.store.insert_usage(&sent).await.unwrap(), 0, "replaying every row writes nothing");
    let key = db.store.usage_since(&UsageSubject::Key(k), 0).await.unwrap();
    assert_eq!(key.requests, 1000);
}

/// A client that sends one `X-Request-Id` for many requests gets one row per request (issue 17:
/// the request id was the primary key, so 20 requests left one row and the budgets saw one).
pub async fn ledger_keeps_every_row_of_a_repeated_request_id(db: &TestDb) {
    let (t, k) = (TenantId::generate(), KeyId::generate());
    let sent: Vec<UsageRecord> =
        (0..20).map(|i| UsageRecord { id: UsageRecord::new_id(), prompt_tokens: i + 1, ..row(0, &t, &k, 0) }).collect();
    assert!(sent.iter().all(|r| r.request_id == "req-00000"));
    let writer = LedgerWriter::spawn(Arc::new(db.store.clone()), LedgerConfig::default());
    for r in &sent {
        assert!(writer.record(r.clone()));
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.duplicates), (20, 0), "{stats:?}");
    let totals = stored(&db.store).await;
    assert_eq!((totals.requests, totals.prompt_tokens), (20, 210), "every request, its own tokens");
    let key = db.store.usage_since(&UsageSubject::Key(k), 0).await.unwrap();
    assert_eq!((key.requests, key.prompt_tokens, key.completion_tokens), (20, 210, 20), "what budgets are seeded from");
    assert_eq!(db.store.insert_usage(&sent).await.unwrap(), 0, "a retried batch still writes nothing twice");
}

/// A database created before the row id existed (migration 1 only) keeps its rows through
/// migration 2, each with its old request id as its id, and takes repeated request ids after it.
pub async fn ledger_migration_keeps_old_rows(kind: DbKind) {
    use sqlx::Connection as _;
    let db = TestDatabase::open(kind).await;
    let url = match kind {
        DbKind::Sqlite => {
            let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            format!("{}?mode=rwc", db.url)
        }
        DbKind::Postgres => db.url.clone(),
    };
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("0001_tenancy.sql"), include_str!("../../migrations/0001_tenancy.sql")).unwrap();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.path()).await.unwrap().run(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO usage_ledger (request_id, tenant_id, key_id, endpoint, model_requested, prompt_tokens, \
         cached_prompt_tokens, completion_tokens, latency_ms, http_status, streamed, cancelled, created_at_ms) \
         VALUES ('old-1', 't', 'k', 'chat.completions', 'm', 7, 0, 3, 10, 200, 0, 0, 1710028800000)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = Store::connect_with(&db.url, &crate::harness::options()).await.unwrap();
    let (t, k) = (TenantId::from("t"), KeyId::from("k"));
    let again = UsageRecord { request_id: "old-1".into(), id: UsageRecord::new_id(), ..row(1, &t, &k, 5) };
    assert_eq!(store.insert_usage(&[again]).await.unwrap(), 1, "the old request id no longer blocks a row");
    let rows = db.ledger().await;
    let ids: Vec<(&str, &str, i64)> =
        rows.iter().map(|r| (r.id.as_str(), r.request_id.as_str(), r.prompt_tokens)).collect();
    assert_eq!(ids.len(), 2, "{rows:#?}");
    assert_eq!(ids[0], ("old-1", "old-1", 7), "the old row keeps its data, its request id as its id");
    assert_eq!((ids[1].1, ids[1].2), ("old-1", 5));
}

pub async fn ledger_flushes_on_its_interval(db: &TestDb) {
    let config = LedgerConfig { flush_interval: Duration::from_millis(50), ..LedgerConfig::default() };
    let writer = LedgerWriter::spawn(Arc::new(db.store.clone()), config);
    for r in rows(3) {
        writer.record(r);
    }
    let start = Instant::now();
    // The rows are visible a moment before the writer counts them: wait for both.
    while stored(&db.store).await.requests < 3 || writer.stats().written < 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "rows not flushed by the interval");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(writer.stats().written, 3, "written before any shutdown");
    writer.shutdown().await;
}

/// The server's writer: its own thread and connection, at idle priority, writing through the
/// shared store while it is behind. Every row is written exactly once either way.
pub async fn ledger_on_its_own_thread_catches_up_at_normal_priority(db: &TestDb) {
    let url = db.url.clone();
    let open: OpenStore = Box::new(move || {
        Box::pin(async move {
            let store = Store::connect_with(&url, &crate::harness::options()).await.map_err(|e| e.to_string())?;
            Ok(Arc::new(store) as Arc<dyn UsageStore>)
        })
    });
    // Behind = a quarter of the channel (1024 rows) waiting; no timed flush for an hour.
    let config = LedgerConfig {
        capacity: 4096,
        max_batch: 8,
        flush_interval: Duration::from_secs(3600),
        ..LedgerConfig::default()
    };
    let writer = LedgerWriter::spawn_on_thread(open, Arc::new(db.store.clone()), config).await.unwrap();
    // A burst far larger than one batch: the writer is behind as soon as it starts.
    let sent = rows(2000);
    for r in &sent {
        assert!(writer.record(r.clone()));
    }
    let start = Instant::now();
    while writer.stats().written < 1000 {
        assert!(start.elapsed() < Duration::from_secs(30), "the writer does not catch up: {:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.accepted, stats.written, stats.duplicates, stats.lost), (2000, 2000, 0, 0), "{stats:?}");
    assert!(stats.escalated > 0, "a backlog of many batches is written at normal priority: {stats:?}");
    // Each escalated write is a round trip through the idle thread: the backlog goes in a few
    // large ones, not in one per 8-row batch (~120).
    assert!(stats.escalated <= 10, "the backlog is taken with the batch: {stats:?}");
    assert_eq!(stored(&db.store).await.requests, 2000);
}

/// The real store behind a fault.
struct Faulty {
    inner: Store,
    fault: Fault,
    calls: AtomicU32,
    /// Rows per write, in call order.
    batches: std::sync::Mutex<Vec<usize>>,
}

enum Fault {
    /// Call 1 commits and then fails (an answer lost to a timeout); call 2 fails; then all pass.
    LostAnswerThenDown,
    /// Any batch holding this request id is rejected as a database error.
    Poison(&'static str),
    /// Every write waits for a permit.
    Gate(Arc<Semaphore>),
    /// Every write fails, as if the database were down.
    Down,
}

fn down() -> StoreError {
    StoreError::Unavailable("connection refused (injected)".into())
}

#[async_trait]
impl UsageStore for Faulty {
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<u64, StoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.batches.lock().unwrap().push(rows.len());
        match &self.fault {
            Fault::LostAnswerThenDown if call == 1 => {
                self.inner.insert_usage(rows).await?;
                Err(down())
            }
            Fault::LostAnswerThenDown if call == 2 => Err(down()),
            Fault::Poison(id) if rows.iter().any(|r| r.request_id == *id) => {
                Err(StoreError::Database("value rejected (injected)".into()))
            }
            Fault::Gate(gate) => {
                let _permit = gate.acquire().await.unwrap();
                self.inner.insert_usage(rows).await
            }
            Fault::Down => Err(down()),
            _ => self.inner.insert_usage(rows).await,
        }
    }

    async fn query_usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        self.inner.query_usage(query).await
    }

    async fn usage_since(&self, subject: &UsageSubject, since_ms: i64) -> Result<UsageTotals, StoreError> {
        self.inner.usage_since(subject, since_ms).await
    }
}

fn faulty(db: &TestDb, fault: Fault) -> Arc<Faulty> {
    Arc::new(Faulty { inner: db.store.clone(), fault, calls: AtomicU32::new(0), batches: Default::default() })
}

pub async fn ledger_retries_failed_writes_without_duplicates(db: &TestDb) {
    let store = faulty(db, Fault::LostAnswerThenDown);
    let writer = LedgerWriter::spawn(store.clone(), quick(LedgerConfig::default()));
    for r in rows(50) {
        writer.record(r);
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.retries, stats.lost, stats.dropped), (2, 0, 0), "{stats:?}");
    assert_eq!(stats.written + stats.duplicates, 50, "{stats:?}");
    assert_eq!(stored(&db.store).await.requests, 50, "the committed first attempt was not written again");
    assert_eq!(store.calls.load(Ordering::SeqCst), 3);
}

pub async fn ledger_splits_a_rejected_batch(db: &TestDb) {
    let store = faulty(db, Fault::Poison("req-00004"));
    let writer = LedgerWriter::spawn(store, quick(LedgerConfig::default()));
    for r in rows(10) {
        writer.record(r);
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.written, stats.lost), (9, 1), "{stats:?}");
    assert_eq!(stored(&db.store).await.requests, 9, "one bad row does not take the others with it");
}

pub async fn ledger_full_channel_drops_without_blocking(db: &TestDb) {
    let gate = Arc::new(Semaphore::new(0));
    let config = LedgerConfig {
        capacity: 8,
        max_batch: 4,
        flush_interval: Duration::from_secs(3600),
        ..LedgerConfig::default()
    };
    let writer = LedgerWriter::spawn(faulty(db, Fault::Gate(Arc::clone(&gate))), config);
    for r in rows(4) {
        writer.record(r);
    }
    // The writer takes the first batch and is stuck writing it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (t, k) = (TenantId::generate(), KeyId::generate());
    let accepted = (100..200).filter(|&i| writer.sender().record(row(i, &t, &k, 1))).count();
    assert_eq!(accepted, 8, "the channel holds 8; the rest are dropped at once, not waited for");
    assert_eq!(writer.stats().dropped, 92);

    gate.add_permits(100);
    let stats = writer.shutdown().await;
    assert_eq!((stats.accepted, stats.written, stats.dropped, stats.lost), (12, 12, 92, 0), "{stats:?}");
    assert_eq!(stored(&db.store).await.requests, 12);
}

/// A writer that fell behind (its store stalled while rows arrived) takes the backlog with its
/// next batches, up to `catch_up_batch` rows each, instead of writing it `max_batch` at a time.
pub async fn ledger_behind_writes_the_backlog_in_large_batches(db: &TestDb) {
    let gate = Arc::new(Semaphore::new(0));
    let store = faulty(db, Fault::Gate(Arc::clone(&gate)));
    let config = LedgerConfig {
        capacity: 4096,
        max_batch: 8,
        catch_up_batch: 1000,
        flush_interval: Duration::from_secs(3600),
        ..LedgerConfig::default()
    };
    let writer = LedgerWriter::spawn(store.clone(), config);
    let sent = rows(3008);
    for r in &sent[..8] {
        assert!(writer.record(r.clone()));
    }
    // The writer takes the first batch and is stuck writing it while 3,000 rows arrive: behind
    // (a quarter of the channel is 1,024 rows).
    tokio::time::sleep(Duration::from_millis(50)).await;
    for r in &sent[8..] {
        assert!(writer.record(r.clone()));
    }
    gate.add_permits(10_000);
    let start = Instant::now();
    while writer.stats().written < 2008 {
        assert!(start.elapsed() < Duration::from_secs(30), "the writer does not catch up: {:?}", writer.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 8 rows, then two catch-up batches of 1,000 (at 8 rows a write: 250 more); then, with
    // less than a quarter of the channel waiting, batches of 8 again.
    let batches = store.batches.lock().unwrap().clone();
    assert_eq!(batches[..3], [8, 1000, 1000], "{batches:?}");
    assert!(batches[3..].iter().all(|&n| n <= 8), "{batches:?}");
    let stats = writer.shutdown().await;
    assert_eq!((stats.accepted, stats.written, stats.duplicates, stats.lost), (3008, 3008, 0, 0), "{stats:?}");
    assert_eq!(stored(&db.store).await.requests, 3008);
}

pub async fn ledger_shutdown_gives_up_after_its_timeout(db: &TestDb) {
    let config = LedgerConfig { shutdown_timeout: Duration::from_millis(300), ..quick(LedgerConfig::default()) };
    let writer = LedgerWriter::spawn(faulty(db, Fault::Down), config);
    let sender = writer.sender();
    for r in rows(5) {
        sender.record(r);
    }
    let start = Instant::now();
    let stats = writer.shutdown().await;
    assert!(start.elapsed() < Duration::from_secs(3), "shutdown must not hang on a dead store");
    assert_eq!((stats.written, stats.lost), (0, 5), "{stats:?}");
    assert!(stats.retries > 0);
    assert!(!sender.record(rows(1).remove(0)), "after shutdown, rows are refused");
    assert_eq!(stored(&db.store).await.requests, 0);
}
