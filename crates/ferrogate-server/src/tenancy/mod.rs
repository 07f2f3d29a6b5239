//! Tenants, stored API keys, the usage ledger and quotas on the server: the [`Tenancy`] service
//! (built once at start when a master key or database is configured), the key cache and its
//! change poller, the failed-auth limiter, per-owner quota counters, and the usage row every
//! finished request leaves (`meter`). Who is calling lives in `request::caller`. See
//! docs/TENANCY.md.
//!
//! Invariants: the plaintext of a key is never held (digests only); every authenticated request
//! to an inference endpoint leaves exactly one usage row; reservations are always settled.

pub mod cache;
pub mod config;
pub mod failures;
pub mod meter;
pub mod quotas;
pub mod sharded;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrogate_core::tenancy::ledger::{LedgerSender, LedgerStats, LedgerWriter};
use ferrogate_core::tenancy::quota::{Owner, Refusal};
use ferrogate_core::tenancy::time::Clock;
use ferrogate_core::tenancy::{KeyDigest, KeyLookup, TenancyStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use quotas::Admission;

use self::cache::KeyCache;
use self::config::TenancySettings;
use self::failures::AuthFailures;
use self::quotas::{AdmitError, Quotas, SharedQuota};
use crate::error::ApiError;
use crate::settings::sections::DeploymentConfig;

pub struct Tenancy {
    pub store: Arc<dyn TenancyStore>,
    pub keys: Arc<KeyCache>,
    /// Failed attempts per address: client keys (stored and static) and the master key apart.
    pub failures: AuthFailures,
    pub quotas: Arc<Quotas>,
    pub ledger: LedgerSender,
    /// Taken by [`Tenancy::shutdown`], which flushes it.
    writer: Mutex<Option<LedgerWriter>>,
    /// Digest of the master key; `None`: this instance serves no admin API.
    master: Option<KeyDigest>,
    pub default_max_tokens: u32,
    poll_interval: Duration,
    /// Time for key expiry, budget windows and ledger rows (tests move it).
    pub clock: Arc<dyn Clock>,
    /// Refusals by kind and owner, read by `/metrics`.
    pub refusals: RefusalCounts,
}

/// Quota refusals since start (atomics: counted on the refusal path, read at scrape time).
#[derive(Debug, Default)]
pub struct RefusalCounts {
    pub budget_key: AtomicU64,
    pub budget_tenant: AtomicU64,
    /// `max_concurrent_requests` refusals (the keys' and tenants' request and token rates are
    /// rate limits: `limits::Limiter` counts those).
    pub concurrency_key: AtomicU64,
    pub concurrency_tenant: AtomicU64,
}

impl RefusalCounts {
    fn count(&self, r: &Refusal) {
        let (budget, owner) = match r {
            Refusal::Budget { owner, .. } => (true, owner),
            Refusal::Concurrency { owner, .. } => (false, owner),
        };
        let n = match (budget, owner) {
            (true, Owner::Key) => &self.budget_key,
            (true, Owner::Tenant) => &self.budget_tenant,
            (false, Owner::Key) => &self.concurrency_key,
            (false, Owner::Tenant) => &self.concurrency_tenant,
        };
        n.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tenancy {
    /// Over an opened store and its running ledger writer (both built by the composition root).
    pub fn new(
        store: Arc<dyn TenancyStore>,
        writer: LedgerWriter,
        s: &TenancySettings,
        deployments: &BTreeMap<String, DeploymentConfig>,
        clock: Arc<dyn Clock>,
        shared: Option<SharedQuota>,
    ) -> Tenancy {
        let prices = prices_by_name(s, deployments);
        Tenancy {
            keys: Arc::new(KeyCache::new(Arc::clone(&store))),
            failures: AuthFailures::new(s.auth_failures_per_minute),
            quotas: Arc::new(match shared {
                Some(shared) => Quotas::new(Arc::clone(&store), prices, Arc::clone(&clock)).with_shared(shared),
                None => Quotas::new(Arc::clone(&store), prices, Arc::clone(&clock)),
            }),
            ledger: writer.sender(),
            writer: Mutex::new(Some(writer)),
            master: s.master_key.as_ref().map(|k| KeyDigest::of(k.expose())),
            default_max_tokens: s.default_max_tokens,
            poll_interval: s.poll_interval,
            store,
            clock,
            refusals: RefusalCounts::default(),
        }
    }

    /// A configuration reload: the new prices (by deployment and alias). Everything else here
    /// — the store, the ledger, the master key, budgets spent — is fixed until a restart.
    pub fn reprice(&self, s: &TenancySettings, deployments: &BTreeMap<String, DeploymentConfig>) {
        self.quotas.set_prices(prices_by_name(s, deployments));
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn has_master(&self) -> bool {
        self.master.is_some()
    }

    /// Constant time in the key's content.
    pub fn is_master(&self, presented: &str) -> bool {
        self.master.is_some_and(|m| m == KeyDigest::of(presented))
    }

    /// Starts the key/tenant change poller; it stops with `stop`.
    pub fn spawn_background(&self, tasks: &TaskTracker, stop: CancellationToken) {
        tasks.spawn(Arc::clone(&self.keys).poll(self.poll_interval, stop.clone()));
        tasks.spawn(Arc::clone(&self.quotas).correct_shared(stop));
    }

    /// Writes every queued usage row (after the last request settled) and stops the writer.
    pub async fn shutdown(&self) -> Option<LedgerStats> {
        if let Some(shared) = self.quotas.shared() {
            shared.shutdown().await;
        }
        let writer = self.writer.lock().ok()?.take()?;
        Some(writer.shutdown().await)
    }

    /// Reserves against the key's and tenant's limits; see [`Quotas::admit`].
    pub async fn admit(
        &self,
        who: &Arc<KeyLookup>,
        model: &str,
        prompt: u32,
        max_tokens: Option<u32>,
    ) -> Result<Option<Admission>, ApiError> {
        self.quotas.admit(who, model, prompt, max_tokens).await.map_err(|e| match e {
            AdmitError::Refused(r) => {
                self.refusals.count(&r);
                ApiError::refused(&r, self.now_ms())
            }
            AdmitError::Unavailable(e) => e.into(),
        })
    }
}

/// Prices are configured per deployment; clients may use its aliases too.
fn prices_by_name(
    s: &TenancySettings,
    deployments: &BTreeMap<String, DeploymentConfig>,
) -> HashMap<String, ferrogate_core::tenancy::quota::Price> {
    let mut prices = HashMap::new();
    for (name, price) in &s.prices {
        prices.insert(name.clone(), *price);
        for alias in deployments.get(name).map(|d| d.aliases.as_slice()).unwrap_or_default() {
            prices.insert(alias.clone(), *price);
        }
    }
    prices
}
