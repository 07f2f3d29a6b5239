//! Connecting: the URL picks the engine, SQLite files are created (WAL) if missing, migrations run.
//!
//! Invariant: a [`Store`] that exists has an up-to-date schema (it migrated, or — with
//! `migrate: false` — it was opened beside one that did); connect errors never echo the URL (it
//! may carry a password).

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};

/// How long SQLite waits on a database another connection has locked.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

use crate::migrations;

/// The database engine behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// A local file: one instance (the embedded default).
    Sqlite,
    /// A server shared by several gateway instances.
    Postgres,
}

impl DbKind {
    /// `sqlite` or `postgres`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        }
    }

    /// The engine a URL names, by its scheme.
    pub fn from_url(url: &str) -> Result<Self, ConnectError> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(DbKind::Sqlite),
            "postgres" | "postgresql" => Ok(DbKind::Postgres),
            other => Err(ConnectError::UnsupportedScheme(other.chars().take(20).collect())),
        }
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a connection before failing as unavailable: short, so a
    /// database outage is reported (and handled as configured) instead of stalling requests.
    pub acquire_timeout: Duration,
    /// Apply the migrations on connect; off for a second pool on a database this process
    /// already migrated (the ledger writer's own connection).
    pub migrate: bool,
    /// PostgreSQL's `statement_timeout` on every pooled connection: a statement the server
    /// works on longer is cancelled there (migrations run on a connection of their own, without
    /// it: rebuilding a large table may take longer). SQLite has no equivalent; callers bound
    /// their calls with deadlines either way (a paused server enforces nothing).
    pub statement_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            migrate: true,
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Why [`Store::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Not `sqlite:` or `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme '{0}': use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedScheme(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create the database directory: {0}")]
    CreateDir(#[source] std::io::Error),
    /// The database could not be opened or reached.
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The schema migrations failed (or the database holds migrations this build does not know).
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Tenants, keys and the usage ledger in SQLite or PostgreSQL. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    kind: DbKind,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Store {
    /// Connects with default [`StoreOptions`]; see [`Store::connect_with`].
    pub async fn connect(url: &str) -> Result<Store, ConnectError> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Opens the database `url` names and applies the migrations.
    ///
    /// `sqlite://PATH` (relative or absolute; `sqlite:///abs/path` works too): the file and its
    /// directory are created if missing, the journal is WAL (readers never block the writer),
    /// foreign keys are enforced, and a locked database is waited on for up to 5 s.
    /// `postgres://…`: an existing database; concurrent starts are safe (migrations take an
    /// advisory lock).
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Store, ConnectError> {
        install_default_drivers();
        let kind = DbKind::from_url(url)?;
        if kind == DbKind::Sqlite {
            prepare_sqlite(url).await?;
        }
        if options.migrate {
            migrate(url, kind).await?;
        }
        let set_timeout = format!("SET statement_timeout = {}", options.statement_timeout.as_millis().max(1));
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let set_timeout = set_timeout.clone();
                Box::pin(async move {
                    match kind {
                        // Per connection (sqlx's defaults, stated here so they are not lost): FKs
                        // enforced, and a locked database waited on rather than failed at once.
                        DbKind::Sqlite => conn.execute(SQLITE_PRAGMAS).await?,
                        DbKind::Postgres => conn.execute(set_timeout.as_str()).await?,
                    };
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(ConnectError::Connect)?;
        Ok(Store { pool, kind })
    }

    /// Which engine this store uses.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the SQLite file (and directory) if missing and switches it to WAL, which is a property
/// of the file: every later connection, including the `Any` pool's, uses it.
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// Applies the migrations on a connection of its own (no `statement_timeout`). A pool of one,
/// not a bare connection: sqlx's migrator over `&mut AnyConnection` is not `Send` for every
/// lifetime, which the ledger writer's boxed future needs.
async fn migrate(url: &str, kind: DbKind) -> Result<(), ConnectError> {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if kind == DbKind::Sqlite {
                    conn.execute(SQLITE_PRAGMAS).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .map_err(ConnectError::Connect)?;
    let migrator = migrations::migrator().await.map_err(ConnectError::Migrate)?;
    migrator.run(&pool).await.map_err(ConnectError::Migrate)?;
    pool.close().await;
    tracing::info!(db = kind.name(), location = %location(url), "store connected, schema up to date");
    Ok(())
}

/// Where a database URL points, safe to log: a SQLite file's path, or a PostgreSQL server's
/// `host:port/database` — never the user or password.
pub fn location(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        return path.split_once('?').map_or(path, |(p, _)| p).to_owned();
    }
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) => format!("{}:{}/{}", o.get_host(), o.get_port(), o.get_database().unwrap_or("")),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

async fn prepare_sqlite(url: &str) -> Result<(), ConnectError> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(ConnectError::Connect)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    if let Some(dir) = opts.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(ConnectError::CreateDir)?;
    }
    let conn = opts.connect().await.map_err(ConnectError::Connect)?;
    conn.close().await.map_err(ConnectError::Connect)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_scheme_picks_the_engine_and_never_echoes_the_url() {
        assert_eq!(DbKind::from_url("sqlite://data/fg.db").unwrap(), DbKind::Sqlite);
        assert_eq!(DbKind::from_url("sqlite::memory:").unwrap(), DbKind::Sqlite);
        assert_eq!(DbKind::from_url("postgres://u:p@h/db").unwrap(), DbKind::Postgres);
        assert_eq!(DbKind::from_url("postgresql://h/db").unwrap(), DbKind::Postgres);
        let err = DbKind::from_url("mysql://root:hunter2@h/db").unwrap_err().to_string();
        assert!(err.contains("'mysql'") && !err.contains("hunter2"), "{err}");
    }

    /// Issue 17: PostgreSQL statements had no server-side bound.
    #[tokio::test]
    async fn postgres_connections_carry_a_statement_timeout() {
        // A fresh database of its own (the testkit's helper would be another copy of this
        // crate's types in a unit test).
        let base = std::env::var("FERROGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        let name = format!("fg_unit_{}", uuid::Uuid::new_v4().simple());
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        let options = StoreOptions { statement_timeout: Duration::from_millis(300), ..StoreOptions::default() };
        let store = Store::connect_with(url.as_str(), &options).await.unwrap();
        let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&store.pool).await.unwrap();
        let slow = sqlx::query("SELECT pg_sleep(2)").execute(&store.pool).await;
        store.close().await;
        admin.execute(format!("DROP DATABASE {name}").as_str()).await.unwrap();
        assert_eq!(shown, "300ms");
        assert!(slow.is_err(), "cancelled by the server");
    }

    #[test]
    fn the_location_names_the_file_or_server_never_the_password() {
        assert_eq!(location("sqlite:///var/lib/fg/fg.db?mode=rwc"), "/var/lib/fg/fg.db");
        assert_eq!(location("sqlite://data/fg.db"), "data/fg.db");
        assert_eq!(location("postgres://admin:hunter2@db.example:5433/fg?sslmode=require"), "db.example:5433/fg");
        assert_eq!(location("postgresql://db/fg"), "db:5432/fg");
    }
}
