//! Multi-tenancy, black-box: a real gateway over a fake upstream, with tenancy on and a fresh
//! database per test — every test runs against SQLite and against PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod budgets;
mod cache;
mod embedded;
mod env;
mod exposure;
mod fronts;
mod keys;
mod ledger;
mod metrics;
mod rates;
mod scopes;
mod tiers;
mod usage;

ferrogate_testkit::against_every_store!(
    keys::key_lifecycle,
    keys::tenant_admin_validates_and_renames,
    keys::auth_is_required_everywhere_but_the_allowlist,
    keys::failed_attempts_are_limited_per_address,
    keys::steady_state_needs_no_database,
    keys::static_keys_still_work_and_are_metered,
    scopes::model_and_endpoint_scopes,
    scopes::max_tokens_per_request_is_capped,
    budgets::budget_exhaustion_and_reset,
    budgets::tenant_budget_caps_all_its_keys,
    budgets::budgets_survive_a_restart,
    budgets::concurrent_requests_overspend_by_at_most_one_request,
    usage::usage_reports_and_cross_tenant_probes,
    ledger::one_row_per_request_whatever_happens,
    ledger::shutdown_writes_every_queued_row,
    ledger::repeated_request_ids_each_get_their_row,
    fronts::anthropic_and_ollama_requests_are_metered,
    embedded::ledger_tokens_equal_what_clients_received,
    rates::key_and_tenant_rates_are_rate_limits,
    rates::key_rates_hold_across_gateways_sharing_redis,
    tiers::tiers_pin_tenants_and_respect_scopes,
    metrics::refusals_and_ledger_rows_are_counted_exactly,
    exposure::details_and_secrets_reach_only_operators,
    cache::repeated_requests_are_answered_from_the_cache_per_tenant,
);
