//! The server side of `core::tenancy::quota`: one set of counters per key and per tenant, kept in
//! process, seeded from the store's ledger the first time a budget needs them; admission takes
//! the tenant's then the key's lock (always in that order) and reserves against both at once.
//!
//! With a shared store ([`SharedQuota`]: Redis, when `[limits] redis_url` is set) budgets and
//! in-flight caps are counted there instead, so every replica sees every reservation
//! (`core::tenancy::shared`, docs/SCALING.md); the ledger seeds it and corrects its drift.
//! Without one, counters are per instance: several instances share budgets only through the seed
//! each one reads at first use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use ferrogate_core::limits::FailurePolicy;
use ferrogate_core::tenancy::quota::{self, Charge, Counters, Owner, Price, Refusal, Seed, Ticket};
use ferrogate_core::tenancy::shared::{SharedAdmit, SharedBudgets, SharedCheck, SharedOwner, SharedTicket};
use ferrogate_core::tenancy::store::{REQUEST_PATH_DEADLINE, within};
use ferrogate_core::tenancy::time::{self, Clock};
use ferrogate_core::tenancy::{GroupBy, KeyId, KeyLookup, Limits, StoreError, TenancyStore, TenantId, UsageQuery};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::sharded::Sharded;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OwnerId {
    Key(KeyId),
    Tenant(TenantId),
}

impl OwnerId {
    /// The shared store's name for the owner.
    fn subject(&self) -> String {
        match self {
            OwnerId::Key(k) => format!("k:{k}"),
            OwnerId::Tenant(t) => format!("t:{t}"),
        }
    }
}

/// Budgets and caps counted in a store every replica shares.
pub struct SharedQuota {
    pub store: Arc<dyn SharedBudgets>,
    /// What a request gets while the store cannot answer.
    pub on_error: FailurePolicy,
    /// How long a request counts in flight if it never settles (its replica died).
    pub lease_ttl: Duration,
    /// How often the counters of owners seen lately are checked against the ledger.
    pub correct_interval: Duration,
}

/// What the shared store did, for `/metrics`.
#[derive(Debug, Default)]
pub struct SharedCounts {
    /// Admissions the store could not answer (then `on_error` applied).
    pub errors: AtomicU64,
    /// Of those, admitted without a reservation (`fail_open`).
    pub failed_open: AtomicU64,
    /// Owners seeded from the ledger.
    pub seeds: AtomicU64,
    /// Windows raised to the ledger's usage by the correction.
    pub corrections: AtomicU64,
}

struct Slot {
    counters: Mutex<Counters>,
    /// Set once the store's usage so far was merged in (only owners with a budget need it).
    seeded: OnceCell<()>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub enum AdmitError {
    Refused(Refusal),
    /// The usage so far could not be read: budgets fail closed.
    Unavailable(StoreError),
}

pub struct Quotas {
    slots: Sharded<OwnerId, Arc<Slot>>,
    shared: Option<SharedQuota>,
    /// Owners admitted through the shared store since the last correction pass.
    touched: Sharded<OwnerId, ()>,
    pub shared_counts: SharedCounts,
    store: Arc<dyn TenancyStore>,
    /// By every model name clients may use (deployments and their aliases); replaced whole by a
    /// configuration reload, read lock-free.
    prices: ArcSwap<HashMap<String, Price>>,
    pub clock: Arc<dyn Clock>,
}

impl Quotas {
    pub fn new(store: Arc<dyn TenancyStore>, prices: HashMap<String, Price>, clock: Arc<dyn Clock>) -> Self {
        Self {
            slots: Sharded::new(),
            shared: None,
            touched: Sharded::new(),
            shared_counts: SharedCounts::default(),
            store,
            prices: ArcSwap::from_pointee(prices),
            clock,
        }
    }

    /// Counts budgets and caps in `shared` instead of in process.
    pub fn with_shared(mut self, shared: SharedQuota) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared store, if budgets are shared.
    pub fn shared(&self) -> Option<&Arc<dyn SharedBudgets>> {
        self.shared.as_ref().map(|s| &s.store)
    }

    pub fn price(&self, model: &str) -> Price {
        self.prices.load().get(model).copied().unwrap_or_default()
    }

    /// A reload's prices; counters (and so budgets spent) are untouched.
    pub fn set_prices(&self, prices: HashMap<String, Price>) {
        self.prices.store(Arc::new(prices));
    }

    fn slot(&self, owner: OwnerId) -> Arc<Slot> {
        let now = self.clock.now_ms();
        self.slots.get_or_insert_with(owner, || {
            Arc::new(Slot { counters: Mutex::new(Counters::new(now)), seeded: OnceCell::new() })
        })
    }

    /// Reserves `prompt + max_tokens` (and its price) against the key's and the tenant's limits.
    /// `None` when neither has any limit: nothing to count.
    pub async fn admit(
        &self,
        who: &Arc<KeyLookup>,
        model: &str,
        prompt: u32,
        max_tokens: Option<u32>,
    ) -> Result<Option<Admission>, AdmitError> {
        let (kl, tl) = (&who.key.limits, &who.tenant.limits);
        if kl.is_unlimited() && tl.is_unlimited() {
            return Ok(None);
        }
        let price = self.price(model);
        let demand = price.charge(u64::from(prompt), u64::from(max_tokens.unwrap_or(0)));
        if let Some(shared) = &self.shared {
            return self.admit_shared(shared, who, demand, price).await;
        }
        let key = self.slot(OwnerId::Key(who.key.id.clone()));
        let tenant = self.slot(OwnerId::Tenant(who.tenant.id.clone()));
        for (slot, owner, limits) in
            [(&key, OwnerId::Key(who.key.id.clone()), kl), (&tenant, OwnerId::Tenant(who.tenant.id.clone()), tl)]
        {
            if limits.has_budget() {
                self.seed(slot, &owner).await.map_err(AdmitError::Unavailable)?;
            }
        }
        let now = self.clock.now_ms();
        let ticket = {
            let (mut t, mut k) = (tenant.lock(), key.lock());
            quota::admit(now, demand, &mut [(Owner::Tenant, tl, &mut t), (Owner::Key, kl, &mut k)])
        }
        .map_err(AdmitError::Refused)?;
        Ok(Some(Admission {
            held: Held::Local { key, tenant, who: Arc::clone(who), ticket, clock: Arc::clone(&self.clock) },
            price,
        }))
    }

    /// [`Quotas::admit`] against the shared store: owners it holds nothing for are seeded from
    /// the ledger first; a store that cannot answer gets the configured policy.
    async fn admit_shared(
        &self,
        shared: &SharedQuota,
        who: &Arc<KeyLookup>,
        demand: Charge,
        price: Price,
    ) -> Result<Option<Admission>, AdmitError> {
        let ids = [OwnerId::Tenant(who.tenant.id.clone()), OwnerId::Key(who.key.id.clone())];
        let owners = vec![
            SharedOwner { owner: Owner::Tenant, subject: ids[0].subject(), limits: who.tenant.limits.clone() },
            SharedOwner { owner: Owner::Key, subject: ids[1].subject(), limits: who.key.limits.clone() },
        ];
        let lease_ttl_ms = i64::try_from(shared.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let check = SharedCheck { owners, demand, lease: uuid::Uuid::now_v7().simple().to_string(), lease_ttl_ms };
        for attempt in 0..2 {
            let answer = match shared.store.admit(&check).await {
                Ok(a) => a,
                Err(e) => {
                    self.shared_counts.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, policy = shared.on_error.as_str(), "budget store unavailable");
                    return match shared.on_error {
                        FailurePolicy::FailOpen => {
                            self.shared_counts.failed_open.fetch_add(1, Ordering::Relaxed);
                            Ok(None)
                        }
                        FailurePolicy::FailClosed => Err(AdmitError::Unavailable(StoreError::Unavailable(Box::new(e)))),
                    };
                }
            };
            match answer {
                SharedAdmit::Admitted(ticket) => {
                    for id in &ids {
                        self.touched.get_or_insert_with(id.clone(), || ());
                    }
                    let store = Arc::clone(&shared.store);
                    return Ok(Some(Admission { held: Held::Shared { store, ticket }, price }));
                }
                SharedAdmit::Refused(r) => return Err(AdmitError::Refused(r)),
                SharedAdmit::Unseeded { day_start, month_start, owners } if attempt == 0 => {
                    for i in owners {
                        let (Some(id), Some(o)) = (ids.get(i), check.owners.get(i)) else { continue };
                        let day = self.charged_since(id, day_start).await.map_err(AdmitError::Unavailable)?;
                        let month = self.charged_since(id, month_start).await.map_err(AdmitError::Unavailable)?;
                        let seeded = shared.store.seed(&o.subject, day_start, month_start, Seed { day, month }).await;
                        seeded.map_err(|e| AdmitError::Unavailable(StoreError::Unavailable(Box::new(e))))?;
                        self.shared_counts.seeds.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SharedAdmit::Unseeded { .. } => break,
            }
        }
        let e = "the budget store stayed unseeded (a window turned during the seed); retry";
        Err(AdmitError::Unavailable(StoreError::Unavailable(e.into())))
    }

    /// Raises the shared counters of every owner admitted since the last pass to the ledger's
    /// usage where they hold less (a settle lost while the store was unreachable), every
    /// `correct_interval`, until `stop`.
    pub async fn correct_shared(self: Arc<Self>, stop: CancellationToken) {
        let Some(shared) = &self.shared else { return };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(shared.correct_interval) => {}
            }
            for id in self.touched.drain_keys() {
                if let Err(e) = self.correct_one(shared, &id).await {
                    tracing::debug!(error = %e, "budget correction skipped");
                }
            }
        }
    }

    async fn correct_one(&self, shared: &SharedQuota, id: &OwnerId) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let (day_start, month_start) = (time::day_start(now), time::month_start(now));
        let day = self.charged_since(id, day_start).await?;
        let month = self.charged_since(id, month_start).await?;
        let ledger = Seed { day, month };
        let raised = shared.store.correct(&id.subject(), day_start, month_start, ledger).await;
        if raised.map_err(|e| StoreError::Unavailable(Box::new(e)))? {
            self.shared_counts.corrections.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Used plus reserved in the current day and month (seeded from the store if needed).
    pub async fn usage(&self, owner: OwnerId) -> Result<Seed, StoreError> {
        if let Some(shared) = &self.shared {
            let held = shared.store.usage(&owner.subject()).await;
            if let Some((usage, _inflight)) = held.map_err(|e| StoreError::Unavailable(Box::new(e)))? {
                return Ok(usage);
            }
            // Unseeded: nothing reserved anywhere yet, the ledger is the whole answer.
            let now = self.clock.now_ms();
            let day = self.charged_since(&owner, time::day_start(now)).await?;
            let month = self.charged_since(&owner, time::month_start(now)).await?;
            return Ok(Seed { day, month });
        }
        let slot = self.slot(owner.clone());
        self.seed(&slot, &owner).await?;
        let now = self.clock.now_ms();
        Ok(slot.lock().usage(now))
    }

    async fn seed(&self, slot: &Slot, owner: &OwnerId) -> Result<(), StoreError> {
        slot.seeded
            .get_or_try_init(|| async {
                let now = self.clock.now_ms();
                let day = self.charged_since(owner, time::day_start(now)).await?;
                let month = self.charged_since(owner, time::month_start(now)).await?;
                slot.lock().seed(now, Seed { day, month });
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    /// The ledger's tokens and cost of `owner` since `from_ms`, priced per model.
    async fn charged_since(&self, owner: &OwnerId, from_ms: i64) -> Result<Charge, StoreError> {
        let (tenant, key) = match owner {
            OwnerId::Key(k) => (None, Some(k.clone())),
            OwnerId::Tenant(t) => (Some(t.clone()), None),
        };
        let q = UsageQuery { from_ms, to_ms: i64::MAX, group_by: GroupBy::Model, tenant, key };
        let rows = within(REQUEST_PATH_DEADLINE, self.store.query_usage(&q)).await?;
        Ok(rows.iter().fold(Charge::default(), |sum, r| {
            let c = self.price(&r.group).charge(r.totals.prompt_tokens, r.totals.completion_tokens);
            Charge { tokens: sum.tokens + c.tokens, micro_usd: sum.micro_usd + c.micro_usd }
        }))
    }
}

/// A reservation held by a request; settled with the actual usage by [`Admission::finish`], or
/// with nothing if dropped unfinished.
pub struct Admission {
    held: Held,
    price: Price,
}

enum Held {
    /// In this process's counters.
    Local { key: Arc<Slot>, tenant: Arc<Slot>, who: Arc<KeyLookup>, ticket: Ticket, clock: Arc<dyn Clock> },
    /// In the shared store.
    Shared { store: Arc<dyn SharedBudgets>, ticket: SharedTicket },
    /// Settled.
    Done,
}

impl Admission {
    pub fn finish(mut self, prompt: u64, completion: u64) {
        let actual = self.price.charge(prompt, completion);
        self.settle(actual);
    }

    fn settle(&mut self, actual: Charge) {
        match std::mem::replace(&mut self.held, Held::Done) {
            Held::Local { key, tenant, who, ticket, clock } => {
                let now = clock.now_ms();
                let (kl, tl): (&Limits, &Limits) = (&who.key.limits, &who.tenant.limits);
                let (mut t, mut k) = (tenant.lock(), key.lock());
                quota::settle(now, &ticket, actual, tl, &mut t);
                quota::settle(now, &ticket, actual, kl, &mut k);
            }
            Held::Shared { store, ticket } => store.settle(ticket, actual),
            Held::Done => {}
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle(Charge::default());
    }
}
