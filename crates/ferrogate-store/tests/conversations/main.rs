//! The conversation-store behaviour suite (issue 18): every test runs against SQLite and against
//! PostgreSQL, each on its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod crash;
mod fixtures;
#[path = "../behaviour/harness.rs"]
#[allow(dead_code)]
mod harness;
mod isolation;
mod lifecycle;
mod turns;

use ferrogate_store::DbKind;

macro_rules! against_every_store {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::harness::TestDb::open(super::DbKind::Sqlite).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::harness::TestDb::open(super::DbKind::Postgres).await;
                    super::$module::$test(&db).await;
                }
            )*
        }
    };
}

against_every_store!(
    isolation::another_tenant_sees_nothing,
    isolation::the_cap_counts_one_tenant_only,
    isolation::the_cap_is_exact_under_concurrent_creates,
    turns::a_failed_turn_leaves_nothing_behind,
    turns::concurrent_turns_on_one_version_one_wins,
    turns::retried_turns_all_land_in_order,
    turns::items_added_and_deleted_bump_the_version,
    lifecycle::everything_survives_reopening_the_store,
    lifecycle::expired_state_is_invisible_then_purged,
    lifecycle::item_pages_follow_the_cursor_both_ways,
    lifecycle::responses_chain_through_previous_ids,
    lifecycle::metadata_updates_and_conversation_delete,
    lifecycle::function_items_round_trip,
    crash::a_killed_writer_leaves_whole_turns,
);

/// The writer that `crash::a_killed_writer_leaves_whole_turns` runs in a child process and kills.
#[tokio::test]
#[ignore = "run as a child process by a_killed_writer_leaves_whole_turns"]
async fn crash_child() {
    crash::child_writer().await;
}
