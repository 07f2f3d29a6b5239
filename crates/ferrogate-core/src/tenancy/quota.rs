//! Admission against a key's and its tenant's limits: token and cost budgets per UTC day and
//! calendar month, requests in flight. (Their per-minute request and token rates are rate limits:
//! `crate::limits`, shared across replicas like the configured rules.)
//!
//! Pure: no I/O, no clock of its own (callers pass `now_ms`), no locks. The caller holds every
//! owner's [`Counters`] (the key's and its tenant's) under its own lock while [`admit`] runs;
//! that is what makes a reservation atomic across both owners.
//!
//! Semantics (docs/TENANCY.md):
//! - Reserve, then reconcile: [`admit`] charges the request's demand (prompt estimate +
//!   `max_tokens`, and its price) to every owner, or to none; [`settle`] replaces the demand by
//!   what was actually used and frees the in-flight slot.
//! - A budget admits while something is left (`used < limit`): the request that crosses the line
//!   is served, the next one is refused. Concurrent requests see each other's reservations, so
//!   the overspend is at most one request's demand.
//! - A request is charged to the windows it started in (the ledger's `created_at`): one that
//!   settles after midnight reconciles nothing into the new day.

use std::fmt;

use super::model::Limits;
use super::time;

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The API key.
    Key,
    /// The key's tenant (its limits cap all its keys together).
    Tenant,
}

impl Owner {
    /// `"key"` or `"tenant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Key => "key",
            Owner::Tenant => "tenant",
        }
    }
}

/// An amount of tokens and money (micro-USD, so sums are exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    /// Prompt plus completion tokens.
    pub tokens: u64,
    /// Cost in millionths of a US dollar.
    pub micro_usd: u64,
}

impl Charge {
    fn plus(self, o: Charge) -> Charge {
        Charge { tokens: self.tokens.saturating_add(o.tokens), micro_usd: self.micro_usd.saturating_add(o.micro_usd) }
    }

    fn minus(self, o: Charge) -> Charge {
        Charge { tokens: self.tokens.saturating_sub(o.tokens), micro_usd: self.micro_usd.saturating_sub(o.micro_usd) }
    }

    fn max(self, o: Charge) -> Charge {
        Charge { tokens: self.tokens.max(o.tokens), micro_usd: self.micro_usd.max(o.micro_usd) }
    }
}

/// A model's price in USD per million tokens (from configuration; unpriced models cost 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million completion tokens.
    pub output: f64,
}

impl Price {
    /// The charge of `prompt` + `completion` tokens, cost rounded up to a micro-dollar.
    pub fn charge(&self, prompt: u64, completion: u64) -> Charge {
        // USD per million tokens × tokens = micro-USD.
        let micro = (prompt as f64).mul_add(self.input, completion as f64 * self.output).ceil();
        let micro_usd = if micro.is_finite() && micro > 0.0 { micro as u64 } else { 0 };
        Charge { tokens: prompt.saturating_add(completion), micro_usd }
    }
}

/// Usage already in the current windows, e.g. read from the store at first use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seed {
    /// Since the start of the UTC day.
    pub day: Charge,
    /// Since the start of the UTC calendar month.
    pub month: Charge,
}

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The UTC day.
    Day,
    /// The UTC calendar month.
    Month,
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Prompt + completion tokens.
    Tokens,
    /// Cost, priced per model.
    Usd,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A day or month budget is used up.
    Budget {
        /// Whose budget.
        owner: Owner,
        /// Day or month.
        window: Window,
        /// Tokens or money.
        unit: Unit,
        /// The budget (tokens, or micro-USD).
        limit: u64,
        /// Used and reserved so far in the window (same unit).
        used: u64,
        /// When the window ends, unix ms.
        resets_at_ms: i64,
    },
    /// Requests in flight at once.
    Concurrency {
        /// Whose limit.
        owner: Owner,
        /// Requests in flight allowed.
        limit: u32,
    },
}

impl Refusal {
    /// How long to wait before retrying, in ms (until the reset, for budgets).
    pub fn retry_after_ms(&self, now_ms: i64) -> i64 {
        match self {
            Refusal::Budget { resets_at_ms, .. } => (resets_at_ms - now_ms).max(1),
            Refusal::Concurrency { .. } => 1000,
        }
    }

    /// Whether this is a budget (quota) refusal rather than a concurrency limit.
    pub fn is_budget(&self) -> bool {
        matches!(self, Refusal::Budget { .. })
    }
}

fn usd(micro: u64) -> String {
    format!("${:.2}", micro as f64 / 1e6)
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Budget { owner, window, unit, limit, used, resets_at_ms } => {
                let period = match window {
                    Window::Day => "daily",
                    Window::Month => "monthly",
                };
                let (what, amounts) = match unit {
                    Unit::Tokens => ("token", format!("{used} of {limit} tokens used")),
                    Unit::Usd => ("cost", format!("{} of {} used", usd(*used), usd(*limit))),
                };
                write!(
                    f,
                    "You exceeded the {period} {what} budget of your {} ({amounts}); it resets at {}.",
                    owner.as_str(),
                    time::format_datetime(*resets_at_ms)
                )
            }
            Refusal::Concurrency { owner, limit } => {
                write!(f, "Too many requests in flight for your {}: at most {limit} at once.", owner.as_str())
            }
        }
    }
}

/// One owner's counters (a key's or a tenant's). Keep it under a lock; pass it to [`admit`]
/// and [`settle`].
#[derive(Debug, Clone)]
pub struct Counters {
    day_start: i64,
    month_start: i64,
    /// Used plus reserved in the current day / month.
    day: Charge,
    month: Charge,
    inflight: u32,
}

impl Counters {
    /// Empty counters for the windows containing `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            day_start: time::day_start(now_ms),
            month_start: time::month_start(now_ms),
            day: Charge::default(),
            month: Charge::default(),
            inflight: 0,
        }
    }

    /// Merges usage read from the store (which may already hold some of what these counters
    /// saw): each amount becomes the larger of the two.
    pub fn seed(&mut self, now_ms: i64, seed: Seed) {
        self.roll(now_ms);
        self.day = self.day.max(seed.day);
        self.month = self.month.max(seed.month);
    }

    /// Used plus reserved in the windows containing `now_ms`.
    pub fn usage(&mut self, now_ms: i64) -> Seed {
        self.roll(now_ms);
        Seed { day: self.day, month: self.month }
    }

    /// Requests admitted and not yet settled.
    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    fn roll(&mut self, now_ms: i64) {
        let (day, month) = (time::day_start(now_ms), time::month_start(now_ms));
        if day != self.day_start {
            (self.day_start, self.day) = (day, Charge::default());
        }
        if month != self.month_start {
            (self.month_start, self.month) = (month, Charge::default());
        }
    }
}

/// A reservation to settle exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    day_start: i64,
    month_start: i64,
    /// What was reserved.
    pub demand: Charge,
}

/// A USD budget in micro-USD (validated finite and non-negative at write time).
fn micro(usd: Option<f64>) -> Option<u64> {
    usd.map(|v| if v.is_finite() && v > 0.0 { (v * 1e6).floor() as u64 } else { 0 })
}

fn check(now_ms: i64, owner: Owner, l: &Limits, c: &mut Counters) -> Result<(), Refusal> {
    c.roll(now_ms);
    if let Some(limit) = l.max_concurrent_requests
        && c.inflight >= limit
    {
        return Err(Refusal::Concurrency { owner, limit });
    }
    let used = [c.day.tokens, c.month.tokens, c.day.micro_usd, c.month.micro_usd];
    for ((window, unit, limit), used) in budgets(l).into_iter().zip(used) {
        if let Some(limit) = limit
            && used >= limit
        {
            let resets_at_ms = resets_at(window, c.day_start, c.month_start);
            return Err(Refusal::Budget { owner, window, unit, limit, used, resets_at_ms });
        }
    }
    Ok(())
}

/// An owner's four budgets in the order they are checked — day tokens, month tokens, day cost,
/// month cost (cost in micro-USD) — `None` where unset. A shared store checks the same list.
pub fn budgets(l: &Limits) -> [(Window, Unit, Option<u64>); 4] {
    [
        (Window::Day, Unit::Tokens, l.tokens_per_day),
        (Window::Month, Unit::Tokens, l.tokens_per_month),
        (Window::Day, Unit::Usd, micro(l.usd_per_day)),
        (Window::Month, Unit::Usd, micro(l.usd_per_month)),
    ]
}

/// When the window starting at `day_start` / `month_start` ends, unix ms.
pub fn resets_at(window: Window, day_start: i64, month_start: i64) -> i64 {
    match window {
        Window::Day => day_start + time::DAY_MS,
        Window::Month => time::month_start(month_start + 32 * time::DAY_MS),
    }
}

/// Checks every owner's limits and, only if all pass, reserves `demand` against all of them and
/// counts the request in flight. On a refusal nothing changes.
pub fn admit(now_ms: i64, demand: Charge, owners: &mut [(Owner, &Limits, &mut Counters)]) -> Result<Ticket, Refusal> {
    for (owner, limits, counters) in owners.iter_mut() {
        check(now_ms, *owner, limits, counters)?;
    }
    for (_, _, c) in owners.iter_mut() {
        c.inflight = c.inflight.saturating_add(1);
        c.day = c.day.plus(demand);
        c.month = c.month.plus(demand);
    }
    Ok(Ticket { day_start: time::day_start(now_ms), month_start: time::month_start(now_ms), demand })
}

/// Reconciles one owner's counters: the reservation is replaced by `actual` (in the windows the
/// request started in, if they are still current) and the in-flight slot is freed. Call once per
/// owner the ticket was admitted against, with that owner's current limits.
pub fn settle(now_ms: i64, ticket: &Ticket, actual: Charge, _limits: &Limits, c: &mut Counters) {
    c.inflight = c.inflight.saturating_sub(1);
    c.roll(now_ms);
    if c.day_start == ticket.day_start {
        c.day = c.day.minus(ticket.demand).plus(actual);
    }
    if c.month_start == ticket.month_start {
        c.month = c.month.minus(ticket.demand).plus(actual);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::tenancy::time::{DAY_MS, format_datetime, parse_time};

    fn at(s: &str) -> i64 {
        parse_time(s).unwrap()
    }

    fn tokens(n: u64) -> Charge {
        Charge { tokens: n, micro_usd: 0 }
    }

    fn day_budget(n: u64) -> Limits {
        Limits { tokens_per_day: Some(n), ..Limits::default() }
    }

    fn admit_key(now: i64, demand: Charge, l: &Limits, c: &mut Counters) -> Result<Ticket, Refusal> {
        admit(now, demand, &mut [(Owner::Key, l, c)])
    }

    #[test]
    fn a_budget_admits_while_something_is_left_and_resets_at_utc_midnight() {
        let now = at("2024-02-29T23:00:00Z");
        let l = day_budget(100);
        let mut c = Counters::new(now);
        let t = admit_key(now, tokens(60), &l, &mut c).unwrap();
        settle(now, &t, tokens(60), &l, &mut c);
        // 40 left: a request reserving 60 is admitted (it may overspend by at most itself)…
        let t = admit_key(now, tokens(60), &l, &mut c).unwrap();
        settle(now, &t, tokens(50), &l, &mut c);
        // …and the next one is refused, naming the budget and its reset.
        let r = admit_key(now, tokens(1), &l, &mut c).unwrap_err();
        let reset = at("2024-03-01");
        assert_eq!(
            r,
            Refusal::Budget {
                owner: Owner::Key,
                window: Window::Day,
                unit: Unit::Tokens,
                limit: 100,
                used: 110,
                resets_at_ms: reset
            }
        );
        assert_eq!(r.retry_after_ms(now), 3_600_000);
        let msg = r.to_string();
        assert!(msg.contains("daily token budget of your key") && msg.contains("110 of 100"), "{msg}");
        assert!(msg.contains("2024-03-01T00:00:00Z"), "{msg}");
        assert!(admit_key(reset - 1, tokens(1), &l, &mut c).is_err());
        assert!(admit_key(reset, tokens(1), &l, &mut c).is_ok(), "a new day, a new budget");
    }

    #[test]
    fn monthly_budgets_reset_on_the_first_of_the_month() {
        let l = Limits { tokens_per_month: Some(10), ..Limits::default() };
        let now = at("2024-01-31T12:00Z");
        let mut c = Counters::new(now);
        let t = admit_key(now, tokens(10), &l, &mut c).unwrap();
        settle(now, &t, tokens(10), &l, &mut c);
        let r = admit_key(at("2024-01-31T23:59:59Z"), tokens(1), &l, &mut c).unwrap_err();
        assert!(
            matches!(r, Refusal::Budget { window: Window::Month, resets_at_ms, .. } if format_datetime(resets_at_ms) == "2024-02-01T00:00:00Z")
        );
        assert!(admit_key(at("2024-02-01"), tokens(1), &l, &mut c).is_ok());
        let dec = at("2024-12-15");
        let mut c = Counters::new(dec);
        let t = admit_key(dec, tokens(10), &l, &mut c).unwrap();
        settle(dec, &t, tokens(10), &l, &mut c);
        let r = admit_key(dec, tokens(1), &l, &mut c).unwrap_err();
        assert!(
            matches!(r, Refusal::Budget { resets_at_ms, .. } if format_datetime(resets_at_ms) == "2025-01-01T00:00:00Z")
        );
    }

    #[test]
    fn settling_refunds_the_unused_reservation() {
        let now = at("2024-05-05T10:00Z");
        let l = day_budget(1000);
        let mut c = Counters::new(now);
        let t = admit_key(now, tokens(500), &l, &mut c).unwrap();
        assert_eq!(c.usage(now).day.tokens, 500);
        assert_eq!(c.inflight(), 1);
        settle(now, &t, tokens(120), &l, &mut c);
        assert_eq!(c.usage(now).day.tokens, 120);
        assert_eq!(c.usage(now).month.tokens, 120);
        assert_eq!(c.inflight(), 0);
    }

    #[test]
    fn a_request_settling_after_midnight_leaves_the_new_day_alone() {
        let l = day_budget(1000);
        let before = at("2024-05-05T23:59:59Z");
        let mut c = Counters::new(before);
        let t = admit_key(before, tokens(500), &l, &mut c).unwrap();
        let after = before + 2000;
        let t2 = admit_key(after, tokens(10), &l, &mut c).unwrap();
        settle(after, &t, tokens(400), &l, &mut c);
        assert_eq!(c.usage(after).day.tokens, 10, "only the new day's own reservation");
        assert_eq!(c.usage(after).month.tokens, 410, "same month: reconciled");
        settle(after, &t2, tokens(3), &l, &mut c);
        assert_eq!(c.usage(after).day.tokens, 3);
    }

    #[test]
    fn the_tenant_caps_all_its_keys_and_refusal_changes_nothing() {
        let now = at("2024-05-05T10:00Z");
        let tenant_l = day_budget(100);
        let key_l = day_budget(1000);
        let mut tenant = Counters::new(now);
        let (mut a, mut b) = (Counters::new(now), Counters::new(now));
        let t = admit(now, tokens(100), &mut [(Owner::Tenant, &tenant_l, &mut tenant), (Owner::Key, &key_l, &mut a)])
            .unwrap();
        settle(now, &t, tokens(100), &tenant_l, &mut tenant);
        settle(now, &t, tokens(100), &key_l, &mut a);
        let r = admit(now, tokens(5), &mut [(Owner::Tenant, &tenant_l, &mut tenant), (Owner::Key, &key_l, &mut b)])
            .unwrap_err();
        assert!(matches!(r, Refusal::Budget { owner: Owner::Tenant, .. }), "{r:?}");
        assert!(r.to_string().contains("budget of your tenant"));
        assert_eq!(b.usage(now), Seed::default(), "a refused request reserves nothing");
        assert_eq!(b.inflight(), 0);
    }

    #[test]
    fn cost_budgets_use_the_models_price() {
        let now = at("2024-05-05T10:00Z");
        let price = Price { input: 1.0, output: 2.0 }; // $ per 1M tokens
        assert_eq!(price.charge(1_000_000, 0).micro_usd, 1_000_000);
        assert_eq!(price.charge(1, 1).micro_usd, 3);
        assert_eq!(Price::default().charge(1000, 1000), tokens(2000));
        let l = Limits { usd_per_day: Some(0.000_010), ..Limits::default() }; // 10 micro-USD
        let mut c = Counters::new(now);
        let t = admit_key(now, price.charge(2, 2), &l, &mut c).unwrap();
        settle(now, &t, price.charge(2, 4), &l, &mut c); // 10 micro-USD
        let r = admit_key(now, price.charge(1, 0), &l, &mut c).unwrap_err();
        assert!(matches!(r, Refusal::Budget { unit: Unit::Usd, limit: 10, used: 10, .. }), "{r:?}");
        assert!(r.to_string().contains("daily cost budget") && r.to_string().contains("$0.00 of $0.00"));
    }

    #[test]
    fn concurrency_counts_requests_in_flight() {
        let now = at("2024-05-05T10:00Z");
        let l = Limits { max_concurrent_requests: Some(2), ..Limits::default() };
        let mut c = Counters::new(now);
        let a = admit_key(now, tokens(1), &l, &mut c).unwrap();
        let _b = admit_key(now, tokens(1), &l, &mut c).unwrap();
        assert_eq!(admit_key(now, tokens(1), &l, &mut c), Err(Refusal::Concurrency { owner: Owner::Key, limit: 2 }));
        settle(now, &a, tokens(1), &l, &mut c);
        assert!(admit_key(now, tokens(1), &l, &mut c).is_ok());
    }

    #[test]
    fn seeds_merge_with_what_was_counted() {
        let now = at("2024-05-05T10:00Z");
        let mut c = Counters::new(now);
        let l = Limits::default();
        let t = admit_key(now, tokens(50), &l, &mut c).unwrap();
        settle(now, &t, tokens(50), &l, &mut c);
        c.seed(now, Seed { day: tokens(30), month: tokens(900) });
        assert_eq!(c.usage(now), Seed { day: tokens(50), month: tokens(900) });
        // The next day only the month carries over.
        assert_eq!(c.usage(now + DAY_MS), Seed { day: tokens(0), month: tokens(900) });
    }

    /// 200 concurrent requests against a nearly spent budget: everyone reserves under the lock,
    /// so at most one request crosses the line, and the overspend is at most its demand.
    #[test]
    fn concurrent_requests_overspend_by_at_most_one_demand() {
        let now = at("2024-05-05T10:00Z");
        let (limit, demand, actual) = (10_000_u64, 300_u64, 250_u64);
        let tenant_l = day_budget(limit);
        let key_l = Limits::default();
        let tenant = Arc::new(Mutex::new(Counters::new(now)));
        let key = Arc::new(Mutex::new(Counters::new(now)));
        {
            // Nearly spent: 9 900 of 10 000 used.
            let (mut t, mut k) = (tenant.lock().unwrap(), key.lock().unwrap());
            let tk = admit(now, tokens(9_900), &mut [(Owner::Tenant, &tenant_l, &mut t), (Owner::Key, &key_l, &mut k)])
                .unwrap();
            settle(now, &tk, tokens(9_900), &tenant_l, &mut t);
            settle(now, &tk, tokens(9_900), &key_l, &mut k);
        }
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let (tenant, key, tenant_l, key_l) = (tenant.clone(), key.clone(), tenant_l.clone(), key_l.clone());
                std::thread::spawn(move || {
                    let ticket = {
                        let (mut t, mut k) = (tenant.lock().unwrap(), key.lock().unwrap());
                        admit(
                            now,
                            tokens(demand),
                            &mut [(Owner::Tenant, &tenant_l, &mut t), (Owner::Key, &key_l, &mut k)],
                        )
                    };
                    let Ok(ticket) = ticket else { return 0 };
                    std::thread::yield_now();
                    let (mut t, mut k) = (tenant.lock().unwrap(), key.lock().unwrap());
                    settle(now, &ticket, tokens(actual), &tenant_l, &mut t);
                    settle(now, &ticket, tokens(actual), &key_l, &mut k);
                    1
                })
            })
            .collect();
        let admitted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 1);
        let used = tenant.lock().unwrap().usage(now).day.tokens;
        assert!(used <= limit + demand, "used {used}");
        assert_eq!(used, 9_900 + actual);
        assert_eq!(tenant.lock().unwrap().inflight(), 0);
    }
}
