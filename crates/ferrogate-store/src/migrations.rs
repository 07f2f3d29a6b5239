//! The schema migrations, embedded in the binary and applied at start by sqlx's `Migrator`
//! (which records them in `_sqlx_migrations` and refuses a database whose applied migrations were
//! edited). One SQL text per migration serves both engines.
//!
//! Invariant: a released migration is never edited — add a new one.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// (version, description, SQL), in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tenancy", include_str!("../migrations/0001_tenancy.sql")),
    (2, "ledger row id", include_str!("../migrations/0002_ledger_row_id.sql")),
    (3, "conversations", include_str!("../migrations/0003_conversations.sql")),
    (4, "jobs", include_str!("../migrations/0004_jobs.sql")),
    (5, "ledger cache hit", include_str!("../migrations/0005_ledger_cache_hit.sql")),
];

/// The embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator over the embedded migrations.
pub(crate) async fn migrator() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await
}
