//! One real database per test — a SQLite file in a temp dir, or a fresh PostgreSQL database
//! (from `FERROGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`) dropped
//! afterwards — and a queue on it whose clock moves only when the test says.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ferrogate_core::jobs::FixedJitter;
use ferrogate_core::tenancy::time::ManualClock;
use ferrogate_store::{DbKind, SqlQueue, Store, StoreOptions};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// 2026-01-01T00:00:00Z: the manual clock's start.
pub const T0: i64 = 1_767_225_600_000;

/// Declares `sqlite::NAME` and `postgres::NAME` for each `module::NAME(&TestDb)` given.
#[macro_export]
macro_rules! against_every_store {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = $crate::common::TestDb::open(ferrogate_store::DbKind::Sqlite).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = $crate::common::TestDb::open(ferrogate_store::DbKind::Postgres).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
    };
}

pub struct TestDb {
    pub kind: DbKind,
    pub url: String,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

pub fn options() -> StoreOptions {
    StoreOptions { max_connections: 8, ..StoreOptions::default() }
}

impl TestDb {
    pub async fn open(kind: DbKind) -> TestDb {
        let (url, dir, pg) = match kind {
            DbKind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (format!("sqlite://{}", dir.path().join("data/ferrogate.db").display()), Some(dir), None)
            }
            DbKind::Postgres => {
                let (url, guard) = PgDatabase::create().await;
                (url, None, Some(guard))
            }
        };
        let store = Store::connect_with(&url, &options()).await.unwrap();
        TestDb { kind, url, store, clock: Arc::new(ManualClock::new(T0)), _dir: dir, _pg: pg }
    }

    /// The queue on this database: the manual clock, jitter fixed at one half.
    pub fn queue(&self) -> SqlQueue {
        queue_on(&self.store, &self.clock)
    }

    /// A second store on the same database (another gateway instance, or after a restart).
    pub async fn reopen(&self) -> Store {
        Store::connect_with(&self.url, &options()).await.unwrap()
    }
}

pub fn queue_on(store: &Store, clock: &Arc<ManualClock>) -> SqlQueue {
    store.job_queue().with_clock(clock.clone()).with_jitter(Arc::new(FixedJitter(0.5)))
}

/// Drops the test's PostgreSQL database, also when the test panicked.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> (String, PgDatabase) {
        let base = std::env::var("FERROGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut admin = PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({e}); see {DEFAULT_PG_URL}"));
        let name = format!("fg_jobs_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        (url.to_string(), PgDatabase { admin_url: base, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut admin = PgConnection::connect(&url).await?;
                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
