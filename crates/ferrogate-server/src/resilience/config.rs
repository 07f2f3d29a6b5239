//! `[queue]`, `[breaker]`, `[retry]` and `[tiers]`: the defaults of traffic governance's
//! resilience half (docs/GOVERNANCE.md), and their checks. Per-deployment overrides live in
//! `[deployments.NAME]` (`concurrency`, `queue_size`, `queue_max_wait_ms`, `weights`,
//! `fallbacks`, `max_tokens_cap`).

use std::collections::BTreeMap;
use std::time::Duration;

use ferrogate_core::balance::RetryPolicy;
use ferrogate_core::breaker::BreakerConfig;
use ferrogate_core::tier::{Tier, TierConfig, TierWeights};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Requests that may wait per deployment once all its slots are busy; 0 = refuse at once.
    pub size: usize,
    /// Longest wait for a slot before 503 `queue_timeout`.
    pub max_wait_ms: u64,
    /// Slots assumed for a backend that does not report its own (OpenAI-compatible, Ollama);
    /// the embedded engine reports its `parallel`.
    pub backend_concurrency: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self { size: 64, max_wait_ms: 30_000, backend_concurrency: 64 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Opens after this many upstream failures in a row; 0 = never on a streak.
    pub consecutive_failures: u32,
    /// Opens when this share of the window's requests failed (0 = never)…
    pub failure_rate: f64,
    /// …once the window holds at least this many requests.
    pub min_requests: u32,
    pub window_ms: u64,
    /// Time open before half-open probes.
    pub open_ms: u64,
    pub half_open_probes: u32,
    /// Share opens with the other replicas through `[limits] redis_url` (pub/sub): a breaker one
    /// replica opens opens on all (docs/SCALING.md).
    pub shared: bool,
}

impl Default for BreakerSection {
    fn default() -> Self {
        let d = BreakerConfig::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            failure_rate: d.failure_rate,
            min_requests: d.min_requests,
            window_ms: d.window.as_millis() as u64,
            open_ms: d.open_for.as_millis() as u64,
            half_open_probes: d.half_open_probes,
            shared: false,
        }
    }
}

impl BreakerSection {
    pub fn to_core(&self) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: self.consecutive_failures,
            failure_rate: self.failure_rate,
            min_requests: self.min_requests,
            window: Duration::from_millis(self.window_ms),
            open_for: Duration::from_millis(self.open_ms),
            half_open_probes: self.half_open_probes,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Extra attempts per request (connect errors, 5xx, 429), before the first byte only.
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Retries earned per request: 0.2 = retries add at most 20% load.
    pub budget_ratio: f64,
    /// Retries that may be spent in a burst.
    pub budget_burst: u32,
}

impl Default for RetrySection {
    fn default() -> Self {
        let d = RetryPolicy::default();
        Self {
            max_retries: d.max_retries,
            backoff_base_ms: d.backoff_base.as_millis() as u64,
            backoff_max_ms: d.backoff_max.as_millis() as u64,
            budget_ratio: d.budget_ratio,
            budget_burst: d.budget_burst,
        }
    }
}

impl RetrySection {
    pub fn to_core(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            budget_ratio: self.budget_ratio,
            budget_burst: self.budget_burst,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TiersSection {
    /// The virtual model clients send to be routed by the classifier.
    pub model: String,
    /// Deployment serving simple requests; tiered routing is on when `small` and `large` are set.
    pub small: Option<String>,
    pub large: Option<String>,
    /// Score at or above which the large tier serves.
    pub threshold: f64,
    /// Prompt tokens that make the length feature 1.
    pub length_scale: u32,
    /// `max_tokens` that makes the max_tokens feature 1.
    pub max_tokens_scale: u32,
    /// Honour the client's `x-ferrogate-tier: small|large` header.
    pub header: bool,
    pub weights: TierWeights,
    /// Tenant name → tier.
    pub tenants: BTreeMap<String, String>,
    /// Key prefix (`fg-xxxxxxxx`) → tier.
    pub keys: BTreeMap<String, String>,
    /// The large tier serves only queued work (background responses, batch lines): an
    /// interactive request routed there is refused with `background_required`.
    pub large_background_only: bool,
}

impl Default for TiersSection {
    fn default() -> Self {
        let d = TierConfig::default();
        Self {
            model: "auto".into(),
            small: None,
            large: None,
            threshold: d.threshold,
            length_scale: d.length_scale,
            max_tokens_scale: d.max_tokens_scale,
            header: true,
            weights: d.weights,
            tenants: BTreeMap::new(),
            keys: BTreeMap::new(),
            large_background_only: false,
        }
    }
}

impl TiersSection {
    pub fn enabled(&self) -> bool {
        self.small.is_some() || self.large.is_some()
    }

    pub fn to_core(&self) -> TierConfig {
        TierConfig {
            weights: self.weights,
            threshold: self.threshold,
            length_scale: self.length_scale,
            max_tokens_scale: self.max_tokens_scale,
        }
    }
}

/// Everything of the resilience config, as one value for `Config`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Resilience {
    pub queue: QueueSection,
    pub breaker: BreakerSection,
    pub retry: RetrySection,
    pub tiers: TiersSection,
    /// `[routing]`: the prefix scorer and the engine-load scrape (docs/SCALING.md).
    pub routing: ferrogate_core::affinity::ScorerConfig,
}

/// Every problem of the sections; `deployments` maps each deployment to its (backends,
/// fallbacks, weights' backend names).
pub fn check(
    r: &Resilience,
    deployments: &BTreeMap<String, crate::settings::sections::DeploymentConfig>,
    errs: &mut Vec<String>,
) {
    errs.extend(r.routing.problems());
    if r.queue.max_wait_ms == 0 {
        errs.push("queue.max_wait_ms must be greater than 0".into());
    }
    if r.queue.backend_concurrency == 0 {
        errs.push("queue.backend_concurrency must be at least 1".into());
    }
    let b = &r.breaker;
    if !(0.0..=1.0).contains(&b.failure_rate) {
        errs.push(format!("breaker.failure_rate must be between 0 and 1 (got {})", b.failure_rate));
    }
    for (field, v) in
        [("window_ms", b.window_ms), ("open_ms", b.open_ms), ("half_open_probes", b.half_open_probes.into())]
    {
        if v == 0 {
            errs.push(format!("breaker.{field} must be greater than 0"));
        }
    }
    let rt = &r.retry;
    if !(0.0..=1.0).contains(&rt.budget_ratio) {
        errs.push(format!("retry.budget_ratio must be between 0 and 1 (got {})", rt.budget_ratio));
    }
    if rt.backoff_max_ms < rt.backoff_base_ms {
        errs.push("retry.backoff_max_ms must be at least retry.backoff_base_ms".into());
    }
    check_tiers(&r.tiers, deployments, errs);
    for (name, d) in deployments {
        check_deployment(name, d, deployments, errs);
    }
}

fn check_tiers(
    t: &TiersSection,
    deployments: &BTreeMap<String, crate::settings::sections::DeploymentConfig>,
    errs: &mut Vec<String>,
) {
    if !t.enabled() {
        return;
    }
    for (field, v) in [("small", &t.small), ("large", &t.large)] {
        match v {
            None => errs.push(format!("tiers.{field} must name a deployment when tiered routing is on")),
            Some(d) if !deployments.contains_key(d) => errs.push(format!("tiers.{field}: no deployment named '{d}'")),
            Some(_) => {}
        }
    }
    if t.model.is_empty() {
        errs.push("tiers.model must not be empty".into());
    }
    let taken = deployments.iter().any(|(n, d)| *n == t.model || d.aliases.contains(&t.model));
    if taken {
        errs.push(format!("tiers.model '{}' is also a deployment name or alias", t.model));
    }
    if !(0.0..=1.0).contains(&t.threshold) {
        errs.push(format!("tiers.threshold must be between 0 and 1 (got {})", t.threshold));
    }
    let w = &t.weights;
    for (field, v) in [
        ("length", w.length),
        ("turns", w.turns),
        ("code", w.code),
        ("math", w.math),
        ("reasoning", w.reasoning),
        ("max_tokens", w.max_tokens),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            errs.push(format!("tiers.weights.{field} must be a number ≥ 0 (got {v})"));
        }
    }
    for (table, map) in [("tenants", &t.tenants), ("keys", &t.keys)] {
        for (who, tier) in map {
            if Tier::parse(tier).is_none() {
                errs.push(format!("tiers.{table}.{who}: '{tier}' is not a tier (small or large)"));
            }
        }
    }
}

fn check_deployment(
    name: &str,
    d: &crate::settings::sections::DeploymentConfig,
    all: &BTreeMap<String, crate::settings::sections::DeploymentConfig>,
    errs: &mut Vec<String>,
) {
    if d.concurrency == Some(0) {
        errs.push(format!("deployments.{name}.concurrency must be at least 1"));
    }
    if d.queue_max_wait_ms == Some(0) {
        errs.push(format!("deployments.{name}.queue_max_wait_ms must be greater than 0"));
    }
    if d.max_tokens_cap == Some(0) {
        errs.push(format!("deployments.{name}.max_tokens_cap must be at least 1"));
    }
    for (backend, w) in &d.weights {
        if !d.backends.contains(backend) {
            errs.push(format!("deployments.{name}.weights: '{backend}' is not one of this deployment's backends"));
        }
        if *w == 0 {
            errs.push(format!("deployments.{name}.weights.{backend} must be at least 1"));
        }
    }
    for f in &d.fallbacks {
        if f == name {
            errs.push(format!("deployments.{name}.fallbacks: a deployment cannot fall back to itself"));
        } else if !all.contains_key(f) {
            errs.push(format!("deployments.{name}.fallbacks: no deployment named '{f}'"));
        }
    }
}
