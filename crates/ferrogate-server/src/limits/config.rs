//! The `[limits]` section: where counters live (`redis_url`), what happens when that store is
//! unreachable (`on_store_error`), whose `X-Forwarded-For` to believe (`trusted_proxies`), and the
//! `[[limits.rules]]`. Raw serde structs, checked into [`LimitSettings`] with every problem listed.

use std::collections::BTreeSet;
use std::time::Duration;

use ferrogate_core::limits::Algorithm;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::tenancy::config::Secret;

/// Largest rate accepted, per minute: counters keep time in µs, so one unit is at least 1 µs and
/// a charge is exact to within one unit (60 000 000 per minute = 1 000 000 per second).
pub const MAX_RATE: u64 = 60_000_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `redis://[user:password@]host:port[/db]`: counters shared by every gateway using it.
    /// Unset: counters live in this process (exact for one instance).
    pub redis_url: Option<Secret>,
    /// Prepended to every Redis key (separate fleets sharing one Redis, tests).
    pub key_prefix: String,
    /// Bound of one Redis check; past it the check fails and `on_store_error` applies.
    pub redis_timeout_ms: u64,
    /// `fail_closed` (default: 503 while the store is unreachable) or `fail_open` (admit).
    pub on_store_error: FailurePolicy,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` is believed. Empty: the client IP
    /// is the TCP peer and the header is ignored.
    pub trusted_proxies: Vec<String>,
    pub rules: Vec<RuleConfig>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "ferrogate:rl:".into(),
            redis_timeout_ms: 50,
            on_store_error: FailurePolicy::FailClosed,
            trusted_proxies: Vec::new(),
            rules: Vec::new(),
        }
    }
}

pub use ferrogate_core::limits::FailurePolicy;

/// Whose traffic a rule counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// All traffic (that the rule's `models` match) together.
    Global,
    /// Per tenant (requests with a stored key only).
    Tenant,
    /// Per API key (stored keys only).
    Key,
    /// Per client IP (authenticated or not).
    Ip,
    /// Per deployment (a model and its aliases count together).
    Model,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Tenant => "tenant",
            Scope::Key => "key",
            Scope::Ip => "ip",
            Scope::Model => "model",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmConfig {
    #[default]
    Gcra,
    SlidingWindow,
}

/// `[[limits.rules]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique; names the rule in 429 messages and in its counters' keys.
    #[serde(default)]
    pub name: Option<String>,
    pub scope: Scope,
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Prompt estimate + `max_tokens` reserved at admission, reconciled with the usage after.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// GCRA bucket sizes; default a whole minute's allowance.
    #[serde(default)]
    pub burst_requests: Option<u64>,
    #[serde(default)]
    pub burst_tokens: Option<u64>,
    /// Only requests to these deployments (names or aliases); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub scope: Scope,
    pub algorithm: Algorithm,
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
    /// Deployment names (aliases resolved); empty: all.
    pub models: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub redis_url: Option<Secret>,
    pub key_prefix: String,
    pub redis_timeout: Duration,
    pub on_store_error: FailurePolicy,
    pub trusted_proxies: Vec<IpNet>,
    pub rules: Vec<Rule>,
}

/// A deployment's name and the names clients may use for it.
pub struct ModelNames<'a> {
    pub name: &'a str,
    pub aliases: &'a [String],
}

/// Checks the section against the deployments; pushes every problem to `errs`.
pub fn check(c: &LimitsConfig, models: &[ModelNames<'_>], errs: &mut Vec<String>) -> LimitSettings {
    // The URL itself is checked by whoever opens the store (the binary's config check).
    if c.redis_timeout_ms == 0 {
        errs.push("limits.redis_timeout_ms must be greater than 0".into());
    }
    let trusted_proxies = c
        .trusted_proxies
        .iter()
        .filter_map(|p| match parse_net(p) {
            Some(n) => Some(n),
            None => {
                errs.push(format!("limits.trusted_proxies: '{p}' is not an IP address or CIDR (e.g. 10.0.0.0/8)"));
                None
            }
        })
        .collect();
    let mut names = BTreeSet::new();
    let rules = c.rules.iter().enumerate().filter_map(|(i, r)| check_rule(i, r, models, &mut names, errs)).collect();
    LimitSettings {
        redis_url: c.redis_url.clone(),
        key_prefix: c.key_prefix.clone(),
        redis_timeout: Duration::from_millis(c.redis_timeout_ms),
        on_store_error: c.on_store_error,
        trusted_proxies,
        rules,
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn check_rule(
    i: usize,
    r: &RuleConfig,
    models: &[ModelNames<'_>],
    names: &mut BTreeSet<String>,
    errs: &mut Vec<String>,
) -> Option<Rule> {
    let name = r.name.clone().unwrap_or_else(|| format!("rule{}", i + 1));
    let at = format!("limits.rules[{i}] ('{name}')");
    let before = errs.len();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        errs.push(format!("{at}: name must be letters, digits, '-', '_' or '.'"));
    }
    if !names.insert(name.clone()) {
        errs.push(format!("{at}: another rule has the name '{name}'"));
    }
    if r.requests_per_minute.is_none() && r.tokens_per_minute.is_none() {
        errs.push(format!("{at}: set requests_per_minute, tokens_per_minute or both"));
    }
    for (field, v) in [
        ("requests_per_minute", r.requests_per_minute),
        ("tokens_per_minute", r.tokens_per_minute),
        ("burst_requests", r.burst_requests),
        ("burst_tokens", r.burst_tokens),
    ] {
        if let Some(v) = v
            && !(1..=MAX_RATE).contains(&v)
        {
            errs.push(format!("{at}: {field} must be between 1 and {MAX_RATE}"));
        }
    }
    let algorithm = match r.algorithm {
        AlgorithmConfig::Gcra => Algorithm::Gcra,
        AlgorithmConfig::SlidingWindow => Algorithm::SlidingWindow,
    };
    if algorithm == Algorithm::SlidingWindow && (r.burst_requests.is_some() || r.burst_tokens.is_some()) {
        errs.push(format!("{at}: burst_* applies to gcra only; a sliding window allows at most its rate"));
    }
    for (burst, rate, field) in [
        (r.burst_requests, r.requests_per_minute, "burst_requests"),
        (r.burst_tokens, r.tokens_per_minute, "burst_tokens"),
    ] {
        if burst.is_some() && rate.is_none() {
            errs.push(format!("{at}: {field} without its per-minute rate"));
        }
    }
    let mut deployments = BTreeSet::new();
    for m in &r.models {
        match models.iter().find(|d| d.name == m || d.aliases.iter().any(|a| a == m)) {
            Some(d) => {
                deployments.insert(d.name.to_owned());
            }
            None => errs.push(format!("{at}: models: no deployment or alias named '{m}'")),
        }
    }
    if errs.len() > before {
        return None;
    }
    Some(Rule {
        name,
        scope: r.scope,
        algorithm,
        requests: r.requests_per_minute.map(|n| (n, r.burst_requests.unwrap_or(n))),
        tokens: r.tokens_per_minute.map(|n| (n, r.burst_tokens.unwrap_or(n))),
        models: deployments,
    })
}
