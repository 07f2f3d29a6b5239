//! The virtual model (`tiers.model`, default `auto`): pins (header, key, tenant — in that order)
//! or else core's classifier choose the small or the large deployment; the decision is
//! returned for the `x-ferrogate-route` header. With `tiers.large_background_only` the large
//! tier serves only queued work; the plan stage refuses interactive requests routed there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrogate_core::Input;
use ferrogate_core::tier::{self, Decision, Tier, TierConfig, TierInput};

use super::config::TiersSection;
use crate::request::caller::Caller;

pub struct TierRouter {
    pub model: String,
    small: String,
    large: String,
    cfg: TierConfig,
    header: bool,
    tenants: HashMap<String, Tier>,
    keys: HashMap<String, Tier>,
    /// `tiers.large_background_only`.
    large_background_only: bool,
    /// Decisions so far: [small, large] (for metrics).
    decided: [AtomicU64; 2],
}

/// What the route stage needs to classify a request.
pub struct Request<'a> {
    pub input: &'a Input,
    pub prompt_tokens: u32,
    pub max_tokens: Option<u32>,
    pub header: Option<Tier>,
    pub caller: Option<&'a Caller>,
}

impl TierRouter {
    /// `None` when tiered routing is off (no `tiers.small`/`tiers.large`). Call after the
    /// config was checked.
    pub fn new(t: &TiersSection) -> Option<Self> {
        let parse = |m: &std::collections::BTreeMap<String, String>| {
            m.iter().filter_map(|(k, v)| Tier::parse(v).map(|t| (k.clone(), t))).collect()
        };
        Some(Self {
            model: t.model.clone(),
            small: t.small.clone()?,
            large: t.large.clone()?,
            cfg: t.to_core(),
            header: t.header,
            tenants: parse(&t.tenants),
            keys: parse(&t.keys),
            large_background_only: t.large_background_only,
            decided: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// The small tier's deployment name.
    pub fn small(&self) -> &str {
        &self.small
    }

    /// The large tier's deployment name.
    pub fn large(&self) -> &str {
        &self.large
    }

    /// Whether `tier` serves only queued work (background responses, batch lines).
    pub fn background_only(&self, tier: Tier) -> bool {
        match tier {
            Tier::Small => false,
            Tier::Large => self.large_background_only,
        }
    }

    /// Requests routed to (small, large) since start.
    pub fn decisions(&self) -> (u64, u64) {
        (self.decided[0].load(Ordering::Relaxed), self.decided[1].load(Ordering::Relaxed))
    }

    /// The deployment to serve `r`, and why.
    pub fn decide(&self, r: &Request<'_>) -> (&str, Decision) {
        let text = match r.input {
            Input::Chat { messages, .. } => messages.iter().map(|m| m.text()).collect::<Vec<_>>().join("\n"),
            Input::Text(t) => t.clone(),
        };
        let prior_turns = match r.input {
            Input::Chat { messages, .. } => messages.len().saturating_sub(1),
            Input::Text(_) => 0,
        };
        let input = TierInput { text: &text, prior_turns, prompt_tokens: r.prompt_tokens, max_tokens: r.max_tokens };
        let d = tier::classify(&self.cfg, &input, self.pin(r));
        let (deployment, i) = match d.tier {
            Tier::Small => (self.small.as_str(), 0),
            Tier::Large => (self.large.as_str(), 1),
        };
        self.decided[i].fetch_add(1, Ordering::Relaxed);
        (deployment, d)
    }

    fn pin(&self, r: &Request<'_>) -> Option<(Tier, &'static str)> {
        if self.header
            && let Some(t) = r.header
        {
            return Some((t, "header"));
        }
        let k = r.caller.and_then(|c| c.principal.key())?;
        if let Some(t) = self.keys.get(&k.key.prefix) {
            return Some((*t, "key"));
        }
        self.tenants.get(&k.tenant.name).map(|t| (*t, "tenant"))
    }
}
