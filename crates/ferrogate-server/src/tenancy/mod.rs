//! Tenants, stored API keys, the usage ledger and quotas on the server: the [`Tenancy`] service
//! (built once at start when a master key or database is configured), the key cache and its
//! change poller, the failed-auth limiter, per-owner quota counters, and the metering that
//! `pipeline::Settle` runs on drop. See docs/TENANCY.md.
//!
//! Invariants: the plaintext of a key is never held (digests only); every authenticated request
//! to an inference endpoint leaves exactly one usage row; reservations are always settled.

pub mod cache;
pub mod caller;
pub mod config;
pub mod failures;
pub mod meter;
pub mod quotas;
pub mod sharded;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrogate_core::tenancy::quota::{Owner, Refusal};
use ferrogate_core::tenancy::time::Clock;
use ferrogate_core::tenancy::{KeyDigest, KeyLookup, TenancyStore, UsageStore};
use ferrogate_store::{LedgerConfig, LedgerSender, LedgerStats, LedgerWriter, OpenStore, Store, StoreOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use caller::{Caller, Principal, RequestMeter};
pub use meter::Metering;
pub use quotas::Admission;

use self::cache::KeyCache;
use self::config::TenancySettings;
use self::failures::AuthFailures;
use self::quotas::{AdmitError, Quotas};
use crate::config::DeploymentConfig;
use crate::error::ApiError;

pub struct Tenancy {
    pub store: Arc<dyn TenancyStore>,
    pub keys: Arc<KeyCache>,
    /// Failed attempts per address: client keys (stored and static) and the master key apart.
    pub failures: AuthFailures,
    pub quotas: Quotas,
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
    /// Opens the database (creating and migrating it) and starts the ledger writer.
    pub async fn connect(
        s: &TenancySettings,
        deployments: &BTreeMap<String, DeploymentConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Tenancy, String> {
        let url = s.database_url.expose().to_owned();
        let store = Store::connect(&url).await.map_err(|e| format!("tenancy.database_url: {e}"))?;
        // The ledger writer runs on its own idle-priority thread, over a connection of its own,
        // and through the shared pool when it falls behind (see `LedgerWriter::spawn_on_thread`);
        // the schema is already migrated by then.
        let open: OpenStore = Box::new(move || {
            Box::pin(async move {
                let options = StoreOptions { max_connections: 1, migrate: false, ..StoreOptions::default() };
                let store =
                    Store::connect_with(&url, &options).await.map_err(|e| format!("tenancy.database_url: {e}"))?;
                Ok(Arc::new(store) as Arc<dyn UsageStore>)
            })
        });
        let ledger_cfg = LedgerConfig { flush_interval: s.ledger_flush_interval, ..LedgerConfig::default() };
        let store = Arc::new(store);
        let writer = LedgerWriter::spawn_on_thread(open, Arc::clone(&store) as Arc<dyn UsageStore>, ledger_cfg).await?;
        Ok(Self::with_parts(store, writer, s, deployments, clock))
    }

    fn with_parts(
        store: Arc<dyn TenancyStore>,
        writer: LedgerWriter,
        s: &TenancySettings,
        deployments: &BTreeMap<String, DeploymentConfig>,
        clock: Arc<dyn Clock>,
    ) -> Tenancy {
        // Prices are configured per deployment; clients may use its aliases too.
        let mut prices = HashMap::new();
        for (name, price) in &s.prices {
            prices.insert(name.clone(), *price);
            for alias in deployments.get(name).map(|d| d.aliases.as_slice()).unwrap_or_default() {
                prices.insert(alias.clone(), *price);
            }
        }
        Tenancy {
            keys: Arc::new(KeyCache::new(Arc::clone(&store))),
            failures: AuthFailures::new(s.auth_failures_per_minute),
            quotas: Quotas::new(Arc::clone(&store), prices, Arc::clone(&clock)),
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
        tasks.spawn(Arc::clone(&self.keys).poll(self.poll_interval, stop));
    }

    /// Writes every queued usage row (after the last request settled) and stops the writer.
    pub async fn shutdown(&self) -> Option<LedgerStats> {
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
