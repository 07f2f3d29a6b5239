//! One real database per test: a SQLite file in a temp dir, or a fresh PostgreSQL database
//! (created from `FERROGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`,
//! and dropped when the test ends, also when it fails). PostgreSQL being unreachable fails the
//! test: CI has it, and a skipped suite would pass silently.

use std::path::{Path, PathBuf};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Row};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Declares, in the calling module, `mod sqlite { NAME }` and `mod postgres { NAME }` for each
/// `module::NAME(&TestDatabase)` given: one behaviour suite, run against both engines.
#[macro_export]
macro_rules! against_every_store {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = $crate::db::TestDatabase::open($crate::db::DbKind::Sqlite).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = $crate::db::TestDatabase::open($crate::db::DbKind::Postgres).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
    };
}

pub use ferrogate_store::DbKind;

/// A database that exists for one test. The schema is created by whoever connects first
/// (`Store::connect` runs the migrations).
pub struct TestDatabase {
    pub kind: DbKind,
    /// `sqlite://…/data/ferrogate.db` (the directory does not exist yet) or `postgres://…/fg_test_…`.
    pub url: String,
    dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

/// One usage-ledger row, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    /// The server-made row id (the primary key).
    pub id: String,
    /// The request id echoed to the client: not unique.
    pub request_id: String,
    pub tenant_id: Option<String>,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub model_requested: String,
    pub model_served: Option<String>,
    pub backend: Option<String>,
    pub prompt_tokens: i64,
    pub cached_prompt_tokens: i64,
    pub completion_tokens: i64,
    pub ttft_ms: Option<i64>,
    pub http_status: i64,
    pub error_type: Option<String>,
    pub streamed: bool,
    pub cancelled: bool,
    /// Served from the response cache.
    pub cache_hit: bool,
    pub created_at_ms: i64,
}

impl TestDatabase {
    pub async fn open(kind: DbKind) -> TestDatabase {
        match kind {
            DbKind::Sqlite => Self::sqlite(),
            DbKind::Postgres => Self::postgres().await,
        }
    }

    fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: connecting creates it and the file.
        let url = format!("sqlite://{}", dir.path().join("data/ferrogate.db").display());
        TestDatabase { kind: DbKind::Sqlite, url, dir: Some(dir), _pg: None }
    }

    async fn postgres() -> TestDatabase {
        let base = std::env::var("FERROGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut admin = PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for the PostgreSQL tests and could not be reached ({e}). \
                 Start it, or point FERROGATE_TEST_POSTGRES_URL at one (default {DEFAULT_PG_URL})."
            )
        });
        let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let guard = PgDatabase { admin_url: base.clone(), name: name.clone() };
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        TestDatabase { kind: DbKind::Postgres, url: url.to_string(), dir: None, _pg: Some(guard) }
    }

    /// A PostgreSQL database that exists already and outlives this value (a private server's).
    pub(crate) fn existing_postgres(url: String) -> TestDatabase {
        TestDatabase { kind: DbKind::Postgres, url, dir: None, _pg: None }
    }

    /// A scratch directory that lives as long as this database (logs, config files).
    pub fn scratch(&self) -> PathBuf {
        match &self.dir {
            Some(d) => d.path().to_path_buf(),
            None => std::env::temp_dir(),
        }
    }

    /// Everything the database holds, as text: the SQLite files' bytes (main file, WAL and
    /// shared memory), or every row of every PostgreSQL table cast to text.
    pub async fn everything_stored(&self) -> String {
        match self.kind {
            DbKind::Sqlite => {
                let dir = Path::new(self.url.trim_start_matches("sqlite://")).parent().unwrap();
                let mut all = Vec::new();
                for entry in std::fs::read_dir(dir).unwrap() {
                    all.extend(std::fs::read(entry.unwrap().path()).unwrap());
                }
                String::from_utf8_lossy(&all).into_owned()
            }
            DbKind::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(tables.contains(&"api_keys".to_owned()), "{tables:?}");
                let mut all = String::new();
                for t in tables {
                    let sql = format!("SELECT COALESCE(string_agg(CAST(t AS TEXT), E'\\n'), '') FROM {t} t");
                    let text: String = sqlx::query(&sql).fetch_one(&mut conn).await.unwrap().get(0);
                    all.push_str(&text);
                }
                all
            }
        }
    }

    /// Every usage-ledger row, oldest first.
    pub async fn ledger(&self) -> Vec<LedgerRow> {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await.unwrap();
        let rows = sqlx::query(
            "SELECT id, request_id, tenant_id, key_id, endpoint, model_requested, model_served, backend, prompt_tokens, \
             cached_prompt_tokens, completion_tokens, ttft_ms, http_status, error_type, streamed, cancelled, cache_hit, \
             created_at_ms FROM usage_ledger ORDER BY created_at_ms, id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.iter()
            .map(|r| LedgerRow {
                id: r.get("id"),
                request_id: r.get("request_id"),
                tenant_id: r.get("tenant_id"),
                key_id: r.get("key_id"),
                endpoint: r.get("endpoint"),
                model_requested: r.get("model_requested"),
                model_served: r.get("model_served"),
                backend: r.get("backend"),
                prompt_tokens: r.get("prompt_tokens"),
                cached_prompt_tokens: r.get("cached_prompt_tokens"),
                completion_tokens: r.get("completion_tokens"),
                ttft_ms: r.get("ttft_ms"),
                http_status: r.get("http_status"),
                error_type: r.get("error_type"),
                streamed: r.get::<i64, _>("streamed") == 1,
                cancelled: r.get::<i64, _>("cancelled") == 1,
                cache_hit: r.get::<i64, _>("cache_hit") == 1,
                created_at_ms: r.get("created_at_ms"),
            })
            .collect()
    }

    /// Waits (up to `within`) until the ledger holds at least `n` rows, and returns them all.
    pub async fn ledger_with(&self, n: usize, within: std::time::Duration) -> Vec<LedgerRow> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let rows = self.ledger().await;
            if rows.len() >= n || tokio::time::Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Drops the test's PostgreSQL database, also when the test panicked.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A fresh runtime on a plain thread: Drop cannot await, and may run inside the test's runtime.
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
