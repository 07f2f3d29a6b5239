//! The job queue (and webhook, file and batch store) behaviour suite: every test body is written once against `impl JobQueue` and
//! run on SQLite and on PostgreSQL, each on a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod batches;
mod concurrency;
mod dlq;
mod endpoints;
mod lifecycle;

against_every_store!(
    lifecycle::enqueue_get_and_complete,
    lifecycle::dedupe_keys_store_one_job_and_batches_are_all_or_nothing,
    lifecycle::priority_then_run_after_order,
    lifecycle::expired_lease_is_taken_over_and_the_old_holder_is_locked_out,
    lifecycle::retryable_failures_back_off,
    lifecycle::cancel_queued_and_running_jobs,
    lifecycle::release_hands_back_without_counting,
    lifecycle::stats_and_batch_counts,
    lifecycle::batch_jobs_page_and_cancel_together,
    dlq::max_attempts_go_to_the_dlq_with_history,
    dlq::poison_goes_straight_to_the_dlq,
    dlq::a_dead_workers_last_attempt_goes_to_the_dlq,
    dlq::list_replay_and_purge_by_filter,
    concurrency::concurrent_workers_never_run_a_job_twice,
    concurrency::two_instances_share_one_queue,
    endpoints::webhook_endpoints_and_deliveries,
    batches::files_are_per_tenant_with_caps_and_quotas,
    batches::batch_records_move_through_their_statuses_once,
);

/// SQLite only: jobs and leases survive closing and reopening the file.
#[tokio::test]
async fn sqlite_queue_survives_reopening_the_file() {
    lifecycle::survives_reopening(&common::TestDb::open(ferrogate_store::DbKind::Sqlite).await).await;
}
