//! Rate limits on the server (docs/GOVERNANCE.md): the [`Limiter`] that turns the configured
//! `[[limits.rules]]` and the tenancy's per-key and per-tenant rates into counter checks against
//! one [`LimitStore`] (in process, or Redis shared by replicas), the reservation a request holds
//! until it settles, the store-failure policy, and the rate-limit response headers.
//!
//! Invariants: one store call per admitted request (all counters at once, all or nothing); a
//! reservation is settled exactly once — reconciled with the tokens actually used by
//! `pipeline::Settle`, or given back whole if the request never reached a backend; a store
//! failure is never a silent fallback to per-instance counting — it follows `on_store_error`,
//! and is logged (at most once a second) and counted ([`Limiter::stats`]).

pub mod client_ip;
pub mod config;
pub mod layer;
pub mod rate_headers;
pub mod reservation;

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use ferrogate_core::limits::Dim;
use ferrogate_core::limits::{Algorithm, Check, Decision, LimitStore, MINUTE_US, Quota};
use ferrogate_core::tenancy::KeyLookup;
use ferrogate_core::tenancy::time::Clock;
use ipnet::IpNet;

use self::config::{FailurePolicy, LimitSettings, Rule, Scope};
use self::rate_headers::RateHeaders;
use self::reservation::{Held, RateReservation};
use crate::error::ApiError;

/// Counters of the limiter's work and of store failures (exported by the metrics layer).
#[derive(Debug, Default)]
pub struct LimiterStats {
    /// Requests checked against at least one counter.
    pub checked: AtomicU64,
    /// Refused with 429.
    pub limited: AtomicU64,
    /// Store calls that failed (unreachable, timed out).
    pub store_errors: AtomicU64,
    /// Requests admitted without limits because the store failed (`fail_open`).
    pub failed_open: AtomicU64,
    /// Requests refused with 503 because the store failed (`fail_closed`).
    pub failed_closed: AtomicU64,
    /// 429s by the scope of the counter that refused, in [`SCOPE_CLASSES`] order.
    pub limited_by_scope: [AtomicU64; 5],
}

/// The scope classes of rate-limit refusals (the metrics' `scope` label): rules' scopes, with
/// `model` rules as `deployment`; the stored keys' and tenants' own rates as `key`, `tenant`.
pub const SCOPE_CLASSES: [&str; 5] = ["key", "tenant", "deployment", "ip", "global"];

// (Refunds that failed are counted by the store: `LimiterSnapshot::failed_refunds`.)

/// A snapshot of [`LimiterStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterSnapshot {
    pub checked: u64,
    pub limited: u64,
    pub store_errors: u64,
    pub failed_open: u64,
    pub failed_closed: u64,
    /// Token refunds lost to store failures (limits briefly stricter, never looser).
    pub failed_refunds: u64,
    /// 429s by scope class, in [`SCOPE_CLASSES`] order.
    pub limited_by_scope: [u64; 5],
}

/// Who and what a request's rate-limit checks count.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    /// The stored key and its tenant, if one is calling.
    pub who: Option<&'a KeyLookup>,
    /// The deployment planned.
    pub deployment: &'a str,
    /// The client's address.
    pub ip: IpAddr,
}

/// The counters that apply to one request (from [`Limiter::checks`]); token counters cost 1
/// until [`Checks::set_tokens`] gives the request's token demand.
pub struct Checks {
    checks: Vec<Check>,
    metas: Vec<Meta>,
}

impl Checks {
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Whether a token rate applies (then the request's reservation must be bounded).
    pub fn counts_tokens(&self) -> bool {
        self.metas.iter().any(|m| m.dim == Dim::Tokens)
    }

    /// Charges every token counter `tokens` (prompt estimate + `max_tokens`).
    pub fn set_tokens(&mut self, tokens: u64) {
        let pairs = self.checks.iter_mut().zip(self.metas.iter_mut());
        for (c, m) in pairs.filter(|(_, m)| m.dim == Dim::Tokens) {
            (c.cost, m.cost) = (tokens, tokens);
        }
    }
}

pub struct Limiter {
    rules: Vec<Rule>,
    store: Arc<dyn LimitStore>,
    policy: FailurePolicy,
    pub trusted_proxies: Vec<IpNet>,
    /// Tenancy is on: stored keys may carry per-key and per-tenant rates.
    key_rates: bool,
    /// Shared with the limiter a reload builds from this one: counts never go backwards.
    stats: Arc<LimiterStats>,
    /// Unix ms of the last store-failure log line (one a second at most).
    last_error_log_ms: AtomicI64,
    clock: Arc<dyn Clock>,
}

/// What one check counts, for messages and headers.
struct Meta {
    dim: Dim,
    origin: Origin,
    quota: Quota,
    cost: u64,
}

/// Where a check comes from; described in words only when it refuses.
#[derive(Clone, Copy)]
enum Origin {
    /// `self.rules[i]`.
    Rule(usize),
    /// The stored key's own rates.
    Key,
    /// The key's tenant's own rates.
    Tenant,
}

impl Limiter {
    /// Over `store` (in process, or Redis shared by replicas: built by the composition root).
    pub fn with_store(s: &LimitSettings, key_rates: bool, store: Arc<dyn LimitStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            rules: s.rules.clone(),
            store,
            policy: s.on_store_error,
            trusted_proxies: s.trusted_proxies.clone(),
            key_rates,
            stats: Arc::default(),
            last_error_log_ms: AtomicI64::new(i64::MIN),
            clock,
        }
    }

    /// A configuration reload's limiter: `s`'s rules, failure policy and trusted proxies over the
    /// same store (so every counter whose key is unchanged keeps its value) and statistics.
    pub fn reconfigured(&self, s: &LimitSettings) -> Self {
        Self {
            rules: s.rules.clone(),
            store: Arc::clone(&self.store),
            policy: s.on_store_error,
            trusted_proxies: s.trusted_proxies.clone(),
            key_rates: self.key_rates,
            stats: Arc::clone(&self.stats),
            last_error_log_ms: AtomicI64::new(i64::MIN),
            clock: Arc::clone(&self.clock),
        }
    }

    /// Whether any request may be checked (rules, or stored keys that may carry rates).
    pub fn active(&self) -> bool {
        !self.rules.is_empty() || self.key_rates
    }

    /// `"memory"` or `"redis"`.
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    pub fn stats(&self) -> LimiterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        LimiterSnapshot {
            checked: l(&s.checked),
            limited: l(&s.limited),
            store_errors: l(&s.store_errors),
            failed_open: l(&s.failed_open),
            failed_closed: l(&s.failed_closed),
            failed_refunds: self.store.failed_refunds(),
            limited_by_scope: std::array::from_fn(|i| l(&s.limited_by_scope[i])),
        }
    }

    /// Waits for refunds still in flight (after the last request settled).
    pub async fn shutdown(&self) {
        self.store.shutdown().await;
    }

    /// The counters that apply to `s`: the rules matching its deployment and scope, and the
    /// stored key's and tenant's own rates.
    pub fn checks(&self, s: &Subject<'_>) -> Checks {
        let mut out = Checks { checks: Vec::new(), metas: Vec::new() };
        self.collect(s, &mut out.checks, &mut out.metas);
        out
    }

    /// Checks and charges `checks` in one store call; 429 when one counter has no room. The
    /// headers of the tightest counters are left in `headers` either way.
    pub async fn acquire(
        &self,
        s: &Subject<'_>,
        checks: Checks,
        headers: &OnceLock<RateHeaders>,
    ) -> Result<Option<RateReservation>, ApiError> {
        let Checks { checks, metas } = checks;
        if checks.is_empty() {
            return Ok(None);
        }
        self.stats.checked.fetch_add(1, Ordering::Relaxed);
        let acquired = match self.store.acquire(&checks).await {
            Ok(a) => a,
            Err(e) => return self.store_failed(&e.0),
        };
        let mut shown = acquired.decisions.clone();
        if !acquired.allowed {
            // Nothing was charged: a counter that had room still has this request's cost.
            for (d, m) in shown.iter_mut().zip(&metas).filter(|(d, _)| d.allowed) {
                d.remaining = d.remaining.saturating_add(m.cost).min(d.limit);
            }
        }
        let _ = headers.set(RateHeaders::from_decisions(metas.iter().zip(&shown).map(|(m, d)| (m.dim, d))));
        if !acquired.allowed {
            self.stats.limited.fetch_add(1, Ordering::Relaxed);
            let (class, err) = self.refusal(s, &metas, &acquired.decisions);
            if let Some(i) = SCOPE_CLASSES.iter().position(|c| *c == class) {
                self.stats.limited_by_scope[i].fetch_add(1, Ordering::Relaxed);
            }
            return Err(err);
        }
        let held =
            checks.into_iter().zip(metas).map(|(c, m)| Held { key: c.key, quota: m.quota, dim: m.dim, cost: m.cost });
        Ok(Some(RateReservation::new(Arc::clone(&self.store), held.collect(), acquired.now_us)))
    }

    fn collect(&self, s: &Subject<'_>, checks: &mut Vec<Check>, metas: &mut Vec<Meta>) {
        let (who, deployment, ip) = (s.who, s.deployment, s.ip);
        for (i, r) in self.rules.iter().enumerate() {
            if !(r.models.is_empty() || r.models.contains(deployment)) {
                continue;
            }
            let value = match (r.scope, who) {
                (Scope::Global, _) => "-".to_owned(),
                (Scope::Ip, _) => ip.to_string(),
                (Scope::Model, _) => deployment.to_owned(),
                (Scope::Key, Some(k)) => k.key.id.to_string(),
                (Scope::Tenant, Some(k)) => k.tenant.id.to_string(),
                (Scope::Key | Scope::Tenant, None) => continue,
            };
            let quota = |(rate, burst): (u64, u64)| Quota::per_minute(r.algorithm, rate).with_burst(burst);
            // One key per rule and scope value: its request and token counters live together.
            let key = format!("r:{}:{}:{value}", r.name, r.scope.as_str());
            for (dim, rate) in [(Dim::Requests, r.requests), (Dim::Tokens, r.tokens)] {
                if let Some(rate) = rate {
                    push(checks, metas, key.clone(), dim, quota(rate), Origin::Rule(i));
                }
            }
        }
        // The tenancy's per-key and per-tenant rates (`requests_per_minute`, `tokens_per_minute`).
        let Some(k) = who.filter(|_| self.key_rates) else { return };
        let owners = [
            (format!("k:{}", k.key.id), &k.key.limits, Origin::Key),
            (format!("t:{}", k.tenant.id), &k.tenant.limits, Origin::Tenant),
        ];
        for (owner, l, origin) in owners {
            // Clamped to what the counters resolve (a higher rate is unreachable anyway).
            if let Some(rpm) = l.requests_per_minute {
                let q = Quota::per_minute(Algorithm::Gcra, u64::from(rpm).min(config::MAX_RATE));
                push(checks, metas, owner.clone(), Dim::Requests, q, origin);
            }
            if let Some(tpm) = l.tokens_per_minute {
                let q = Quota::per_minute(Algorithm::Gcra, tpm.min(config::MAX_RATE));
                push(checks, metas, owner.clone(), Dim::Tokens, q, origin);
            }
        }
    }

    /// 429 naming the counter that needs the longest wait (and that counter's scope class, one
    /// of [`SCOPE_CLASSES`]); Retry-After covers every refused one.
    fn refusal(&self, s: &Subject<'_>, metas: &[Meta], decisions: &[Decision]) -> (&'static str, ApiError) {
        let refused = metas.iter().zip(decisions).filter(|(_, d)| !d.allowed);
        let Some((m, d)) = refused.max_by_key(|(_, d)| d.retry_after_us) else {
            return ("global", ApiError::internal("refused with no refusing counter"));
        };
        let (class, scope) = self.describe(m.origin, s);
        (class, refusal_error(m, d, &scope))
    }

    /// The scope class and the words for a check's origin: "rule 'per-ip' (per client IP
    /// 10.0.0.7)", "your API key".
    fn describe(&self, origin: Origin, s: &Subject<'_>) -> (&'static str, String) {
        let r = match origin {
            Origin::Key => return ("key", "your API key".into()),
            Origin::Tenant => return ("tenant", "your tenant".into()),
            Origin::Rule(i) => match self.rules.get(i) {
                Some(r) => r,
                None => return ("global", "a rate limit".into()),
            },
        };
        let (who, deployment, ip) = (s.who, s.deployment, s.ip);
        match r.scope {
            Scope::Global => ("global", format!("rule '{}' (all traffic)", r.name)),
            Scope::Ip => ("ip", format!("rule '{}' (per client IP {ip})", r.name)),
            Scope::Model => ("deployment", format!("rule '{}' (per model '{deployment}')", r.name)),
            Scope::Key => {
                let prefix = who.map_or("?", |k| k.key.prefix.as_str());
                ("key", format!("rule '{}' (per API key {prefix})", r.name))
            }
            Scope::Tenant => {
                let name = who.map_or("?", |k| k.tenant.name.as_str());
                ("tenant", format!("rule '{}' (per tenant '{name}')", r.name))
            }
        }
    }

    fn store_failed(&self, cause: &str) -> Result<Option<RateReservation>, ApiError> {
        let errors = self.stats.store_errors.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.clock.now_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self.last_error_log_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::error!(
                store = self.store.kind(),
                policy = self.policy.as_str(),
                errors,
                cause,
                "rate-limit store unavailable"
            );
        }
        match self.policy {
            FailurePolicy::FailOpen => {
                self.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            FailurePolicy::FailClosed => {
                self.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::limiter_unavailable(cause))
            }
        }
    }
}

fn push(checks: &mut Vec<Check>, metas: &mut Vec<Meta>, key: String, dim: Dim, quota: Quota, origin: Origin) {
    checks.push(Check { key, dim, quota, cost: 1 });
    metas.push(Meta { dim, origin, quota, cost: 1 });
}

/// The 429 for the refusing check `m` (decision `d`), its origin described as `scope`.
fn refusal_error(m: &Meta, d: &Decision, scope: &str) -> ApiError {
    let wait = Duration::from_micros(d.retry_after_us.max(0).unsigned_abs());
    let per = if m.quota.period_us == MINUTE_US { "per minute".to_owned() } else { "per period".to_owned() };
    let what = m.dim.as_str();
    let message = if m.cost > d.limit {
        format!(
            "Rate limit reached for {what} {per} on {}: this request needs {} {what}, above the limit of {}; \
             it can pass only when the limit is fully replenished. Please try again in {}.",
            scope,
            m.cost,
            d.limit,
            rate_headers::go_duration(wait)
        )
    } else {
        format!(
            "Rate limit reached for {what} {per} on {}: limit {}, remaining {}, requested {}. Please try again in {}.",
            scope,
            d.limit,
            d.remaining,
            m.cost,
            rate_headers::go_duration(wait)
        )
    };
    ApiError::rate_limited(m.dim == Dim::Tokens, message, wait)
}
