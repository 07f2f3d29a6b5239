//! The server side of `core::tenancy::quota`: one set of counters per key and per tenant, kept in
//! process, seeded from the store's ledger the first time a budget needs them; admission takes
//! the tenant's then the key's lock (always in that order) and reserves against both at once.
//!
//! Limitation (docs/TENANCY.md): counters are per instance. Several instances share budgets only
//! through the seed each one reads at first use; shared counters (Redis) are the next step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;

use ferrogate_core::tenancy::quota::{self, Charge, Counters, Owner, Price, Refusal, Seed, Ticket};
use ferrogate_core::tenancy::store::{REQUEST_PATH_DEADLINE, within};
use ferrogate_core::tenancy::time::{self, Clock};
use ferrogate_core::tenancy::{GroupBy, KeyId, KeyLookup, Limits, StoreError, TenancyStore, TenantId, UsageQuery};
use tokio::sync::OnceCell;

use super::sharded::Sharded;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OwnerId {
    Key(KeyId),
    Tenant(TenantId),
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
    store: Arc<dyn TenancyStore>,
    /// By every model name clients may use (deployments and their aliases); replaced whole by a
    /// configuration reload, read lock-free.
    prices: ArcSwap<HashMap<String, Price>>,
    pub clock: Arc<dyn Clock>,
}

impl Quotas {
    pub fn new(store: Arc<dyn TenancyStore>, prices: HashMap<String, Price>, clock: Arc<dyn Clock>) -> Self {
        Self { slots: Sharded::new(), store, prices: ArcSwap::from_pointee(prices), clock }
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
            key,
            tenant,
            who: Arc::clone(who),
            ticket: Some(ticket),
            price,
            clock: Arc::clone(&self.clock),
        }))
    }

    /// Used plus reserved in the current day and month (seeded from the store if needed).
    pub async fn usage(&self, owner: OwnerId) -> Result<Seed, StoreError> {
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
    key: Arc<Slot>,
    tenant: Arc<Slot>,
    who: Arc<KeyLookup>,
    ticket: Option<Ticket>,
    price: Price,
    clock: Arc<dyn Clock>,
}

impl Admission {
    pub fn finish(mut self, prompt: u64, completion: u64) {
        let actual = self.price.charge(prompt, completion);
        self.settle(actual);
    }

    fn settle(&mut self, actual: Charge) {
        let Some(ticket) = self.ticket.take() else { return };
        let now = self.clock.now_ms();
        let (kl, tl): (&Limits, &Limits) = (&self.who.key.limits, &self.who.tenant.limits);
        let (mut t, mut k) = (self.tenant.lock(), self.key.lock());
        quota::settle(now, &ticket, actual, tl, &mut t);
        quota::settle(now, &ticket, actual, kl, &mut k);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle(Charge::default());
    }
}
