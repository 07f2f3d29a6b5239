//! Whether a request may be answered from, or fill, the response cache.
//!
//! The rule: the deployment must opt in; the request must be deterministic — `temperature` 0 or a
//! fixed `seed` — unless the deployment sets `cache_nondeterministic` (then a sampled answer is
//! served again to whoever asks the same); only one choice (`n` absent or 1); and the client's
//! `Cache-Control` is obeyed ([`CacheControl`]).

use std::time::Duration;

use ferrogate_protocol::openai::ChatCompletionRequest;

use super::control::CacheControl;

/// A deployment's cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Off unless the deployment opts in.
    pub enabled: bool,
    /// How long an entry is served.
    pub ttl: Duration,
    /// Cache sampled (non-deterministic) requests too.
    pub cache_nondeterministic: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self { enabled: false, ttl: Duration::from_secs(3600), cache_nondeterministic: false }
    }
}

/// Why a request does not use the cache (a closed set: metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// The deployment does not cache.
    Disabled,
    /// Sampled at a non-zero temperature without a seed.
    Nondeterministic,
    /// More than one choice asked for.
    SeveralChoices,
    /// Log probabilities asked for (an entry keeps only the text).
    Logprobs,
    /// `Cache-Control: no-store`.
    NoStore,
}

impl Bypass {
    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Bypass::Disabled => "disabled",
            Bypass::Nondeterministic => "nondeterministic",
            Bypass::SeveralChoices => "several_choices",
            Bypass::Logprobs => "logprobs",
            Bypass::NoStore => "no_store",
        }
    }
}

/// What to do with the cache for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Leave the cache alone (and say nothing in `x-ferrogate-cache`).
    Bypass(Bypass),
    /// Cacheable: look up when `read` (false under `no-cache`), store the answer on a miss.
    Use {
        /// Answer from the cache on a hit.
        read: bool,
    },
}

/// Decides [`CacheUse`] for a request under a deployment's policy and the client's header.
pub fn decide(req: &ChatCompletionRequest, policy: &CachePolicy, control: CacheControl) -> CacheUse {
    let logprobs = wants_logprobs(&req.extra);
    let sampling = Sampling { temperature: req.temperature, seed: req.seed, n: req.n, logprobs };
    decide_sampling(sampling, policy, control)
}

/// The request fields [`decide`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    /// 0 is greedy (deterministic).
    pub temperature: Option<f32>,
    /// A fixed seed makes sampling repeatable.
    pub seed: Option<i64>,
    /// Choices asked for.
    pub n: Option<u32>,
    /// The answer must carry log probabilities (a cached one cannot).
    pub logprobs: bool,
}

impl Sampling {
    /// Temperature 0 (greedy) or a fixed seed.
    pub fn is_deterministic(&self) -> bool {
        self.temperature == Some(0.0) || self.seed.is_some()
    }
}

/// [`decide`] from the sampling fields alone (the plan stage has no chat request left).
pub fn decide_sampling(req: Sampling, policy: &CachePolicy, control: CacheControl) -> CacheUse {
    if !policy.enabled {
        return CacheUse::Bypass(Bypass::Disabled);
    }
    if !control.may_write() {
        return CacheUse::Bypass(Bypass::NoStore);
    }
    if req.n.is_some_and(|n| n > 1) {
        return CacheUse::Bypass(Bypass::SeveralChoices);
    }
    if req.logprobs {
        return CacheUse::Bypass(Bypass::Logprobs);
    }
    if !policy.cache_nondeterministic && !req.is_deterministic() {
        return CacheUse::Bypass(Bypass::Nondeterministic);
    }
    CacheUse::Use { read: control.may_read() }
}

/// `logprobs: true` (or any `top_logprobs`): the answer must carry them, a cached one cannot.
pub fn wants_logprobs(extra: &serde_json::Map<String, serde_json::Value>) -> bool {
    extra.get("logprobs").is_some_and(|v| v.as_bool() == Some(true))
        || extra.get("top_logprobs").is_some_and(|v| !v.is_null())
}

/// Temperature 0 (greedy) or a fixed seed: the same request gives the same answer.
pub fn is_deterministic(req: &ChatCompletionRequest) -> bool {
    req.temperature == Some(0.0) || req.seed.is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn req(extra: serde_json::Value) -> ChatCompletionRequest {
        let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    const ON: CachePolicy = CachePolicy { enabled: true, ttl: Duration::from_secs(60), cache_nondeterministic: false };
    const NONE: CacheControl = CacheControl { no_store: false, no_cache: false };

    #[test]
    fn deterministic_requests_are_cached() {
        assert_eq!(decide(&req(json!({"temperature": 0.0})), &ON, NONE), CacheUse::Use { read: true });
        assert_eq!(decide(&req(json!({"temperature": 0.8, "seed": 3})), &ON, NONE), CacheUse::Use { read: true });
    }

    #[test]
    fn sampled_requests_only_when_configured() {
        let sampled = req(json!({"temperature": 0.8}));
        assert_eq!(decide(&sampled, &ON, NONE), CacheUse::Bypass(Bypass::Nondeterministic));
        assert_eq!(decide(&req(json!({})), &ON, NONE), CacheUse::Bypass(Bypass::Nondeterministic), "default is 1.0");
        let loose = CachePolicy { cache_nondeterministic: true, ..ON };
        assert_eq!(decide(&sampled, &loose, NONE), CacheUse::Use { read: true });
    }

    #[test]
    fn the_header_and_the_deployment_can_turn_it_off() {
        let r = req(json!({"temperature": 0.0}));
        assert_eq!(decide(&r, &CachePolicy::default(), NONE), CacheUse::Bypass(Bypass::Disabled));
        let no_store = CacheControl::parse(["no-store"]);
        assert_eq!(decide(&r, &ON, no_store), CacheUse::Bypass(Bypass::NoStore));
        let no_cache = CacheControl::parse(["no-cache"]);
        assert_eq!(decide(&r, &ON, no_cache), CacheUse::Use { read: false });
        let two = req(json!({"temperature": 0.0, "n": 2}));
        assert_eq!(decide(&two, &ON, NONE), CacheUse::Bypass(Bypass::SeveralChoices));
        let lp = req(json!({"temperature": 0.0, "logprobs": true}));
        assert_eq!(decide(&lp, &ON, NONE), CacheUse::Bypass(Bypass::Logprobs));
    }
}
