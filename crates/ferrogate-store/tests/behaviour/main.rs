//! The store behaviour suite: every test runs against SQLite and against PostgreSQL, each on its
//! own fresh database (see `harness`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod keys;
mod ledger;
mod tenants;
mod usage;

use ferrogate_store::DbKind;

/// Declares `sqlite::NAME` and `postgres::NAME` for each `module::NAME(&TestDb)` given.
macro_rules! against_every_store {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = super::harness::TestDb::open(super::DbKind::Sqlite).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = super::harness::TestDb::open(super::DbKind::Postgres).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
    };
}

against_every_store!(
    tenants::tenant_crud_and_unique_names,
    tenants::tenant_delete_refuses_while_keys_are_active,
    keys::key_create_and_lookup_by_digest,
    keys::key_plaintext_is_never_stored,
    keys::lookup_reports_expired_and_revoked_keys,
    keys::rotate_invalidates_the_old_secret,
    keys::scopes_and_limits_round_trip,
    keys::changes_since_sees_a_revoke_from_another_instance,
    usage::usage_queries_group_and_sum_within_bounds,
    usage::usage_filtered_by_tenant_never_sees_another_tenant,
    usage::budget_usage_sums_the_utc_day_and_month,
    usage::usage_rows_with_nul_bytes_are_still_written,
    ledger::ledger_writes_every_request_exactly_once,
    ledger::ledger_keeps_every_row_of_a_repeated_request_id,
    ledger::ledger_flushes_on_its_interval,
    ledger::ledger_on_its_own_thread_catches_up_at_normal_priority,
    ledger::ledger_retries_failed_writes_without_duplicates,
    ledger::ledger_splits_a_rejected_batch,
    ledger::ledger_full_channel_drops_without_blocking,
    ledger::ledger_behind_writes_the_backlog_in_large_batches,
    ledger::ledger_shutdown_gives_up_after_its_timeout,
);

/// Migration 2 (the ledger's server-made row id) over a database made by migration 1 alone.
#[tokio::test]
async fn sqlite_ledger_migration_keeps_old_rows() {
    ledger::ledger_migration_keeps_old_rows(DbKind::Sqlite).await;
}

#[tokio::test]
async fn postgres_ledger_migration_keeps_old_rows() {
    ledger::ledger_migration_keeps_old_rows(DbKind::Postgres).await;
}

/// SQLite only: the file is created with its directory and uses WAL.
#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    use sqlx::{Connection, Row};
    let db = harness::TestDb::open(DbKind::Sqlite).await;
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&db.url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(mode, "wal");
}

/// A URL of another engine is refused without echoing it (it may carry a password).
#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = ferrogate_store::Store::connect("mysql://root:hunter2@localhost/db").await.unwrap_err().to_string();
    assert!(err.contains("mysql") && !err.contains("hunter2"), "{err}");
}
