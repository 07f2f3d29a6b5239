//! One real database per test: a SQLite file in a temp dir, or a fresh PostgreSQL database
//! (created from `FERROGATE_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`,
//! and dropped when the test ends, also when it fails). PostgreSQL being unreachable fails the
//! test: CI has it, and a skipped suite would pass silently.

use std::path::Path;

use ferrogate_store::{DbKind, Store, StoreOptions};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Row};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDb {
    pub store: Store,
    /// For opening a second store on the same database (a second gateway instance).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

pub fn options() -> StoreOptions {
    StoreOptions { max_connections: 4, ..StoreOptions::default() }
}

impl TestDb {
    pub async fn open(kind: DbKind) -> TestDb {
        match kind {
            DbKind::Sqlite => Self::sqlite().await,
            DbKind::Postgres => Self::postgres().await,
        }
    }

    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: connect creates it and the file.
        let url = format!("sqlite://{}", dir.path().join("data/ferrogate.db").display());
        let store = Store::connect_with(&url, &options()).await.unwrap();
        TestDb { store, url, _dir: Some(dir), _pg: None }
    }

    async fn postgres() -> TestDb {
        let base = std::env::var("FERROGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let mut admin = PgConnection::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for the PostgreSQL store tests and could not be reached ({e}). \
                 Start it, or point FERROGATE_TEST_POSTGRES_URL at one (default {DEFAULT_PG_URL})."
            )
        });
        let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let guard = PgDatabase { admin_url: base.clone(), name: name.clone() };
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        let url = url.to_string();
        let store = Store::connect_with(&url, &options()).await.unwrap();
        TestDb { store, url, _dir: None, _pg: Some(guard) }
    }

    pub fn kind(&self) -> DbKind {
        self.store.kind()
    }

    /// Everything the database holds, as text: the SQLite files' bytes (main file, WAL and
    /// shared memory), or every row of every PostgreSQL table cast to text.
    pub async fn everything_stored(&self) -> String {
        match self.kind() {
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
