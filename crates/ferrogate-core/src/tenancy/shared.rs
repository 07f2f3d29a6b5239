//! Budgets and in-flight caps shared by every gateway replica: the [`SharedBudgets`] trait that
//! a shared store (Redis, in `ferrogate-store`) implements, with the same semantics as the
//! in-process [`quota`](super::quota) counters. See docs/SCALING.md.
//!
//! Semantics (one behaviour test runs them against Redis):
//! - [`SharedBudgets::admit`] checks every owner's in-flight cap and day/month budgets (the
//!   order and rule of [`quota::budgets`](super::quota::budgets): a budget admits while
//!   `used < limit`) and, only if all pass, reserves the demand against every owner and takes an
//!   in-flight *lease* for the request — atomically, on the store's own clock (so a replica's
//!   skewed clock changes nothing). N replicas together overspend by at most one request's
//!   reservation, as one replica does.
//! - A lease expires after `lease_ttl_ms`: a request whose replica died before settling stops
//!   counting in flight, and its reservation is dropped (the ledger correction brings back what
//!   it used, if its row was written).
//! - An owner the store holds nothing for (new, or the store lost its data) answers
//!   [`SharedAdmit::Unseeded`]: the caller reads the owner's usage in the current windows from the
//!   ledger (PostgreSQL — the source of truth) and [`SharedBudgets::seed`]s it; a seed never
//!   overwrites one already there (replicas racing to seed agree).
//! - [`SharedBudgets::settle`] replaces the reservation by what was used (in the windows the
//!   request started in, if still current) and ends the lease; fire and forget, off the request
//!   path. [`SharedBudgets::correct`] raises a window's settled usage to the ledger's if the
//!   store counted less (a settle lost while the store was unreachable).

use async_trait::async_trait;

use super::model::Limits;
use super::quota::{Charge, Owner, Refusal, Seed};

/// One owner of a request (its key or its tenant) and its limits.
#[derive(Debug, Clone)]
pub struct SharedOwner {
    /// Key or tenant (for the refusal's wording).
    pub owner: Owner,
    /// The store's name for the owner, unique across owners (e.g. `k:<key id>`, `t:<tenant id>`).
    pub subject: String,
    /// The owner's limits; only `max_concurrent_requests` and the four budgets are used here.
    pub limits: Limits,
}

/// A request to admit.
#[derive(Debug, Clone)]
pub struct SharedCheck {
    /// Every owner; admitted against all or none.
    pub owners: Vec<SharedOwner>,
    /// What to reserve: prompt estimate + `max_tokens`, and its price.
    pub demand: Charge,
    /// The request's in-flight lease id (unique per request).
    pub lease: String,
    /// How long the lease holds if the request never settles, ms.
    pub lease_ttl_ms: i64,
}

/// A reservation to settle once, with [`SharedBudgets::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTicket {
    /// The request's in-flight lease.
    pub lease: String,
    /// The owners' subjects, in the check's order.
    pub subjects: Vec<String>,
    /// The day the request was charged to (store time), unix ms.
    pub day_start: i64,
    /// The month the request was charged to (store time), unix ms.
    pub month_start: i64,
    /// What was reserved.
    pub demand: Charge,
}

/// The store's answer to [`SharedBudgets::admit`].
#[derive(Debug, Clone, PartialEq)]
pub enum SharedAdmit {
    /// Reserved against every owner.
    Admitted(SharedTicket),
    /// An owner's cap or budget is reached; nothing was reserved.
    Refused(Refusal),
    /// The store holds nothing yet for these owners (indices into [`SharedCheck::owners`]):
    /// seed them from the ledger for the windows starting at `day_start` / `month_start`, then ask
    /// again.
    Unseeded {
        /// The current day (store time), unix ms.
        day_start: i64,
        /// The current month (store time), unix ms.
        month_start: i64,
        /// Which owners.
        owners: Vec<usize>,
    },
}

/// The shared store could not answer (unreachable, timed out, protocol error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget store unavailable: {0}")]
pub struct SharedError(pub String);

/// Budgets and in-flight caps kept where every replica sees them.
#[async_trait]
pub trait SharedBudgets: Send + Sync + 'static {
    /// Checks every owner and, only if all pass, reserves and takes the lease; atomic.
    async fn admit(&self, check: &SharedCheck) -> Result<SharedAdmit, SharedError>;

    /// Sets an owner's usage in the windows starting at `day_start` / `month_start`, unless the
    /// store already holds some (another replica seeded first).
    async fn seed(&self, subject: &str, day_start: i64, month_start: i64, usage: Seed) -> Result<(), SharedError>;

    /// Replaces the reservation by `actual` and ends the lease. Off the caller's path; failures
    /// are counted ([`SharedBudgets::failed_settles`]) and left to the lease expiry and
    /// [`SharedBudgets::correct`].
    fn settle(&self, ticket: SharedTicket, actual: Charge);

    /// Raises the owner's settled usage in the current windows to `ledger` where it is lower.
    /// `true` if something was raised.
    async fn correct(&self, subject: &str, day_start: i64, month_start: i64, ledger: Seed)
    -> Result<bool, SharedError>;

    /// Used plus reserved in the current windows, and requests in flight; `None` if unseeded.
    async fn usage(&self, subject: &str) -> Result<Option<(Seed, u32)>, SharedError>;

    /// Settles that could not be applied since start.
    fn failed_settles(&self) -> u64 {
        0
    }

    /// Waits for settles still in flight (graceful shutdown).
    async fn shutdown(&self) {}
}

/// The refusal for owner `owner` (checked in [`quota::budgets`](super::quota::budgets) order):
/// `which` 0 is the in-flight cap, 1–4 the budgets; `used` the amount found.
pub fn refusal(owner: &SharedOwner, which: usize, used: u64, day_start: i64, month_start: i64) -> Option<Refusal> {
    if which == 0 {
        let limit = owner.limits.max_concurrent_requests?;
        return Some(Refusal::Concurrency { owner: owner.owner, limit });
    }
    let (window, unit, limit) = *super::quota::budgets(&owner.limits).get(which - 1)?;
    let resets_at_ms = super::quota::resets_at(window, day_start, month_start);
    Some(Refusal::Budget { owner: owner.owner, window, unit, limit: limit?, used, resets_at_ms })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::tenancy::quota::{Unit, Window};
    use crate::tenancy::time::parse_time;

    #[test]
    fn refusals_name_the_limit_found_exhausted() {
        let o = SharedOwner {
            owner: Owner::Tenant,
            subject: "t:x".into(),
            limits: Limits {
                max_concurrent_requests: Some(3),
                tokens_per_month: Some(10),
                usd_per_day: Some(1.5),
                ..Limits::default()
            },
        };
        let day = parse_time("2024-02-29").unwrap();
        let month = parse_time("2024-02-01").unwrap();
        assert_eq!(refusal(&o, 0, 3, day, month), Some(Refusal::Concurrency { owner: Owner::Tenant, limit: 3 }));
        let Some(Refusal::Budget { window, unit, limit, used, resets_at_ms, .. }) = refusal(&o, 2, 12, day, month)
        else {
            panic!("a budget refusal")
        };
        assert_eq!((window, unit, limit, used), (Window::Month, Unit::Tokens, 10, 12));
        assert_eq!(resets_at_ms, parse_time("2024-03-01").unwrap());
        let Some(Refusal::Budget { unit, limit, resets_at_ms, .. }) = refusal(&o, 3, 1_500_000, day, month) else {
            panic!("a cost refusal")
        };
        assert_eq!((unit, limit, resets_at_ms), (Unit::Usd, 1_500_000, parse_time("2024-03-01").unwrap()));
        assert_eq!(refusal(&o, 1, 5, day, month), None, "no day token budget: not a refusal");
        assert_eq!(refusal(&o, 9, 5, day, month), None);
    }
}
