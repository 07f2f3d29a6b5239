//! Model name → deployment → backend. A deployment is what clients name (`model`); it has one or
//! more targets (backend + the model name that backend knows + a weight), an admission queue,
//! a retry budget and an optional fallback chain. Picking follows the deployment's routing mode
//! among targets whose circuit breaker lets requests through: weighted power-of-two-choices on
//! outstanding requests (`balance`, the default), round robin, or prefix affinity scored against
//! the engines' load (`affinity`).
//!
//! Invariant: the registry is immutable after start-up (lock-free reads on the hot path);
//! in-flight counts are atomics released by a guard, so a cancelled request never leaks one; a
//! breaker ticket travels in the same guard and is resolved (or given back) exactly once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::affinity::score::{self, Prompt, Reason, Route, Signals};
use crate::affinity::{LoadCell, Router, RoutingMode, ScorerConfig, prompt_blocks};
use crate::backend::{Backend, BackendError, Capabilities, Input};
use crate::balance::{self, Candidate, RetryBudget, RetryPolicy};
use crate::breaker::{Breaker, BreakerConfig, Outcome, Ticket};
use crate::queue::{AdmissionQueue, QueueConfig};

pub struct Target {
    pub backend: Arc<dyn Backend>,
    /// The model name sent to this backend.
    pub upstream_model: String,
    /// Share of the deployment's traffic relative to its other targets.
    pub weight: u32,
    /// One per backend, shared by every deployment that uses the backend.
    pub breaker: Arc<Breaker>,
    inflight: AtomicUsize,
    /// Last active health check result; unhealthy targets are skipped while others are healthy.
    healthy: AtomicBool,
    /// The engine's own load, written by the binary's scrape loop (prefix routing reads it).
    pub load: LoadCell,
}

impl Target {
    /// Weight 1 and a breaker of its own with default settings.
    pub fn new(backend: Arc<dyn Backend>, upstream_model: impl Into<String>) -> Self {
        let breaker = Arc::new(Breaker::new(BreakerConfig::default(), Instant::now()));
        Self::with(backend, upstream_model, 1, breaker)
    }

    pub fn with(
        backend: Arc<dyn Backend>,
        upstream_model: impl Into<String>,
        weight: u32,
        breaker: Arc<Breaker>,
    ) -> Self {
        Self {
            backend,
            upstream_model: upstream_model.into(),
            weight: weight.max(1),
            breaker,
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            load: LoadCell::default(),
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// How a deployment admits, retries and falls back.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub queue: QueueConfig,
    pub retry: RetryPolicy,
    /// Deployments tried in order when this one fails or is overloaded (`large` → `small`).
    pub fallbacks: Vec<String>,
    /// `max_tokens` above this is lowered to it (and a request without one gets it).
    pub max_tokens_cap: Option<u32>,
    /// Whether `queue.concurrency` was configured (else it follows the backends' slots).
    pub concurrency_fixed: bool,
    /// `extra_body = true`: client fields beyond every backend's allow-list are passed through
    /// (vendor extensions); otherwise a request carrying one is refused with 400.
    pub extra_body: bool,
    /// How a request picks among the targets.
    pub routing: RoutingMode,
    /// The prefix scorer's knobs (`routing = "prefix"`).
    pub scorer: ScorerConfig,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            queue: QueueConfig { concurrency: 64, size: 64, max_wait: std::time::Duration::from_secs(30) },
            retry: RetryPolicy::default(),
            fallbacks: Vec::new(),
            max_tokens_cap: None,
            concurrency_fixed: false,
            extra_body: false,
            routing: RoutingMode::default(),
            scorer: ScorerConfig::default(),
        }
    }
}

/// Counters of what the deployment's resilience did, for metrics.
#[derive(Debug, Default)]
pub struct DeploymentStats {
    pub retries: AtomicU64,
    /// Retries not made because the retry budget was empty.
    pub retries_denied: AtomicU64,
    /// Requests this deployment handed to a fallback deployment.
    pub fallbacks: AtomicU64,
    /// Picks refused at once because every target's breaker was open.
    pub circuit_open: AtomicU64,
}

pub struct Deployment {
    pub name: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Arc<Target>>,
    /// Unix seconds, reported as `created` in `/v1/models`.
    pub created: u64,
    pub policy: Policy,
    pub queue: AdmissionQueue,
    pub retry_budget: RetryBudget,
    pub stats: DeploymentStats,
    /// The routing mode's state (the prefix index, the round-robin turn).
    pub router: Router,
}

/// Why no target could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    NoTargets,
    /// Every target's breaker is open: fail fast.
    CircuitOpen,
}

thread_local! {
    static RNG: RefCell<fastrand::Rng> = RefCell::new(fastrand::Rng::new());
}

/// Runs `f` with this thread's random generator (no lock, no syscall).
pub fn with_rng<T>(f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

impl Deployment {
    pub fn new(name: impl Into<String>, aliases: Vec<String>, targets: Vec<Arc<Target>>, created: u64) -> Self {
        Self::with_policy(name, aliases, targets, created, Policy::default())
    }

    pub fn with_policy(
        name: impl Into<String>,
        aliases: Vec<String>,
        targets: Vec<Arc<Target>>,
        created: u64,
        policy: Policy,
    ) -> Self {
        Self {
            name: name.into(),
            aliases,
            targets,
            created,
            queue: AdmissionQueue::new(policy.queue),
            retry_budget: RetryBudget::new(&policy.retry),
            router: Router::new(policy.routing, policy.scorer.clone()),
            policy,
            stats: DeploymentStats::default(),
        }
    }

    /// Picks a target for a first attempt (see [`Deployment::pick_excluding`]).
    pub fn pick(&self) -> Result<TargetGuard, PickError> {
        self.pick_excluding(&[])
    }

    /// Picks a target whose breaker lets a request through, preferring targets not in `tried`
    /// (indexes into `targets`), then healthy ones; weighted power of two choices among them.
    pub fn pick_excluding(&self, tried: &[usize]) -> Result<TargetGuard, PickError> {
        self.pick_with(tried, |c, rng| balance::pick(c, rng).map(|i| (i, Route::of(Reason::P2c))))
    }

    /// Picks a target for a request of `input` by the deployment's routing mode, among the
    /// same candidates as [`Deployment::pick_excluding`]; the guard says why
    /// ([`TargetGuard::route`]).
    pub fn pick_for(&self, input: &Input, tried: &[usize]) -> Result<TargetGuard, PickError> {
        match self.router.mode {
            RoutingMode::P2c => self.pick_excluding(tried),
            RoutingMode::RoundRobin => self.pick_with(tried, |c, _| {
                score::round_robin(c, &self.router.turn).map(|i| (i, Route::of(Reason::RoundRobin)))
            }),
            RoutingMode::Prefix => self.pick_prefix(input, tried),
        }
    }

    /// Prefix affinity: score the targets on the prompt's blocks they hold, the prefixes they
    /// are home to and their load, then remember that the chosen one holds these blocks.
    fn pick_prefix(&self, input: &Input, tried: &[usize]) -> Result<TargetGuard, PickError> {
        let cfg = &self.router.config;
        let blocks = prompt_blocks(input, cfg.block_bytes, cfg.max_blocks);
        let n = self.targets.len();
        let index = self.router.index.as_ref();
        let depths = index.map(|ix| ix.depths(&blocks.hashes, n)).unwrap_or_default();
        let homes = index.map(|ix| ix.homes(n)).unwrap_or_default();
        let max_age = Duration::from_millis(cfg.load_max_age_ms);
        let signals: Vec<Signals> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| Signals {
                depth: depths.get(i).copied().unwrap_or(0),
                engine: t.load.get(max_age),
                homes: homes.get(i).copied().unwrap_or(0),
            })
            .collect();
        let prompt = Prompt { blocks: blocks.hashes.len(), homed: blocks.home.is_some() };
        let guard = self.pick_with(tried, |c, rng| score::choose(c, &signals, prompt, cfg, rng))?;
        if let Some(ix) = index {
            ix.record(&blocks.hashes, guard.index);
            if let Some(home) = blocks.home {
                ix.settle(home, guard.index);
            }
        }
        Ok(guard)
    }

    fn pick_with(
        &self,
        tried: &[usize],
        mut choose: impl FnMut(&[Candidate], &mut fastrand::Rng) -> Option<(usize, Route)>,
    ) -> Result<TargetGuard, PickError> {
        if self.targets.is_empty() {
            return Err(PickError::NoTargets);
        }
        let now = Instant::now();
        let mut cands: Vec<Candidate> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                weight: t.weight,
                inflight: t.inflight(),
                available: t.breaker.available(now),
                healthy: t.is_healthy(),
                tried: tried.contains(&i),
            })
            .collect();
        // A breaker may refuse between `available` and `try_acquire` (a racing probe): skip it.
        for _ in 0..self.targets.len() {
            let Some((i, route)) = with_rng(|rng| choose(&cands, rng)) else { break };
            let t = &self.targets[i];
            if let Some(ticket) = t.breaker.try_acquire(now) {
                t.inflight.fetch_add(1, Ordering::Relaxed);
                return Ok(TargetGuard { target: Arc::clone(t), index: i, ticket: Some(ticket), route });
            }
            cands[i].available = false;
        }
        self.stats.circuit_open.fetch_add(1, Ordering::Relaxed);
        Err(PickError::CircuitOpen)
    }

    /// What every target can do (a request the deployment accepts works on any target).
    pub fn capabilities(&self) -> Capabilities {
        let all = Capabilities {
            chat: true,
            text_completion: true,
            tools: true,
            images: true,
            usage: true,
            logprobs: true,
            embeddings: true,
        };
        self.targets.iter().map(|t| t.backend.capabilities()).fold(all, |a, c| Capabilities {
            chat: a.chat && c.chat,
            text_completion: a.text_completion && c.text_completion,
            tools: a.tools && c.tools,
            images: a.images && c.images,
            usage: a.usage && c.usage,
            logprobs: a.logprobs && c.logprobs,
            embeddings: a.embeddings && c.embeddings,
        })
    }

    /// Whether the untyped client field `name` may go to this deployment: every backend accepts
    /// it (its kind's allow-list), or the deployment passes vendor fields through.
    pub fn accepts_field(&self, name: &str) -> bool {
        self.policy.extra_body || self.targets.iter().all(|t| t.backend.accepted_fields().contains(&name))
    }

    /// Applies the deployment's `max_tokens` cap.
    pub fn cap_max_tokens(&self, requested: Option<u32>) -> Option<u32> {
        match (requested, self.policy.max_tokens_cap) {
            (Some(r), Some(cap)) => Some(r.min(cap)),
            (None, Some(cap)) => Some(cap),
            (r, None) => r,
        }
    }

    /// Re-sizes the queue's concurrency to the sum of the targets' slots (`default_slots` for
    /// backends that do not report theirs), unless concurrency was configured.
    pub fn resize_to_slots(&self, default_slots: usize) {
        if self.policy.concurrency_fixed {
            return;
        }
        let n: usize = self.targets.iter().map(|t| t.backend.parallel_slots().unwrap_or(default_slots)).sum();
        if n > 0 && n != self.queue.stats().concurrency {
            self.queue.set_concurrency(n);
        }
    }
}

/// Holds one in-flight slot of a target and its breaker ticket; released on drop (success,
/// error or cancel). Record the outcome with [`TargetGuard::succeeded`] / [`TargetGuard::failed`];
/// a guard dropped without one counts as neutral (e.g. the client went away).
pub struct TargetGuard {
    target: Arc<Target>,
    /// Position in the deployment's targets (for "tried" sets).
    index: usize,
    ticket: Option<Ticket>,
    /// Why this target was picked.
    route: Route,
}

impl TargetGuard {
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Why the target was picked (the routing mode's reason, and the prefix match).
    pub fn route(&self) -> Route {
        self.route
    }

    pub fn succeeded(&mut self) {
        self.resolve(Outcome::Success);
    }

    /// Counts against the breaker only if the upstream caused it.
    pub fn failed(&mut self, e: &BackendError) {
        self.resolve(Outcome::of(e));
    }

    fn resolve(&mut self, outcome: Outcome) {
        if let Some(t) = self.ticket.take() {
            self.target.breaker.record(t, outcome, Instant::now());
        }
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.resolve(Outcome::Neutral);
        self.target.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All deployments, addressable by name and alias.
#[derive(Default)]
pub struct Registry {
    deployments: Vec<Arc<Deployment>>,
    by_name: HashMap<String, Arc<Deployment>>,
}

impl Registry {
    /// Fails with every name that is used twice.
    pub fn new(deployments: Vec<Deployment>) -> Result<Self, Vec<String>> {
        Self::shared(deployments.into_iter().map(Arc::new).collect())
    }

    /// As [`new`](Self::new), over deployments that may also be in another registry (a
    /// configuration reload keeps an unchanged deployment — its queue, in-flight counts and retry
    /// budget — by putting the same `Arc` in the next registry).
    pub fn shared(deployments: Vec<Arc<Deployment>>) -> Result<Self, Vec<String>> {
        let mut by_name = HashMap::new();
        let mut dupes = Vec::new();
        for d in &deployments {
            for name in std::iter::once(&d.name).chain(&d.aliases) {
                if by_name.insert(name.clone(), Arc::clone(d)).is_some() {
                    dupes.push(format!("model name '{name}' is used by more than one deployment"));
                }
            }
        }
        if dupes.is_empty() { Ok(Self { deployments, by_name }) } else { Err(dupes) }
    }

    pub fn resolve(&self, model: &str) -> Option<&Arc<Deployment>> {
        self.by_name.get(model)
    }

    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::affinity;
    use crate::backend::*;
    use async_trait::async_trait;
    use ferrogate_protocol::openai::{ChatMessage, Role};

    struct Nop(&'static str);
    #[async_trait]
    impl Backend for Nop {
        fn name(&self) -> &str {
            self.0
        }
        fn kind(&self) -> &'static str {
            "nop"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                chat: true,
                text_completion: true,
                tools: false,
                images: false,
                usage: true,
                logprobs: false,
                embeddings: false,
            }
        }
        async fn chat(&self, _: InferenceRequest) -> Result<Completion, BackendError> {
            Err(BackendError::Internal("nop".into()))
        }
        async fn chat_stream(&self, _: InferenceRequest) -> Result<EventStream, BackendError> {
            Err(BackendError::Internal("nop".into()))
        }
        async fn health(&self) -> Health {
            Health::Healthy
        }
        async fn models(&self) -> Result<Vec<String>, BackendError> {
            Ok(vec![])
        }
    }

    fn dep(names: &[&'static str]) -> Deployment {
        let targets = names.iter().map(|n| Arc::new(Target::new(Arc::new(Nop(n)), "m"))).collect();
        Deployment::new("d", vec!["alias".into()], targets, 0)
    }

    #[test]
    fn least_outstanding_and_guard_release() {
        let d = dep(&["a", "b"]);
        let g1 = d.pick().unwrap();
        let g2 = d.pick().unwrap();
        assert_ne!(g1.target().backend.name(), g2.target().backend.name());
        let first = g1.target().backend.name().to_owned();
        drop(g1);
        let g3 = d.pick().unwrap();
        assert_eq!(g3.target().backend.name(), first, "the idle target is preferred");
        assert!(d.targets.iter().map(|t| t.inflight()).sum::<usize>() == 2);
    }

    #[test]
    fn unhealthy_skipped_while_a_healthy_one_exists() {
        let d = dep(&["a", "b"]);
        d.targets[0].set_healthy(false);
        for _ in 0..4 {
            assert_eq!(d.pick().unwrap().target().backend.name(), "b");
        }
        d.targets[1].set_healthy(false);
        assert!(d.pick().is_ok(), "all unhealthy: still try rather than refuse");
    }

    #[test]
    fn open_breakers_are_routed_around_then_fail_fast() {
        let d = dep(&["a", "b"]);
        let down = BackendError::Connect("refused".into());
        for _ in 0..BreakerConfig::default().consecutive_failures {
            let mut g = d.pick_excluding(&[1]).unwrap();
            assert_eq!(g.index(), 0);
            g.failed(&down);
        }
        for _ in 0..4 {
            assert_eq!(d.pick().unwrap().target().backend.name(), "b", "a's breaker is open");
        }
        for _ in 0..BreakerConfig::default().consecutive_failures {
            d.pick().unwrap().failed(&down);
        }
        assert_eq!(d.pick().err(), Some(PickError::CircuitOpen));
        assert_eq!(d.stats.circuit_open.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_deployment_cap_lowers_max_tokens() {
        let policy = Policy { max_tokens_cap: Some(100), ..Policy::default() };
        let d = Deployment::with_policy("d", vec![], vec![], 0, policy);
        assert_eq!(d.cap_max_tokens(Some(500)), Some(100));
        assert_eq!(d.cap_max_tokens(Some(50)), Some(50));
        assert_eq!(d.cap_max_tokens(None), Some(100));
        assert_eq!(d.pick().err(), Some(PickError::NoTargets));
    }

    fn routed(mode: RoutingMode) -> Deployment {
        let targets = ["a", "b"].iter().map(|n| Arc::new(Target::new(Arc::new(Nop(n)), "m"))).collect();
        Deployment::with_policy("d", vec![], targets, 0, Policy { routing: mode, ..Policy::default() })
    }

    fn chat(turns: &[(Role, &str)]) -> Input {
        let messages = turns.iter().map(|(r, t)| ChatMessage::new(*r, *t)).collect();
        Input::Chat { messages, tools: None, tool_choice: None }
    }

    #[test]
    fn prefix_routing_keeps_each_tenant_and_its_conversation_on_one_backend() {
        let d = routed(RoutingMode::Prefix);
        let sys: Vec<String> =
            (0..6).map(|t| format!("You are tenant {t}'s assistant. {}", "Rules. ".repeat(150))).collect();
        let mut home = Vec::new();
        for s in &sys {
            let g = d.pick_for(&chat(&[(Role::System, s), (Role::User, "hello")]), &[]).unwrap();
            assert_eq!(g.route().reason, Reason::Place, "a new prefix is placed");
            home.push(g.index());
        }
        assert_eq!(home.iter().filter(|h| **h == 0).count(), 3, "three tenants each: {home:?}");
        for round in 0..5 {
            for (t, s) in sys.iter().enumerate() {
                let q = format!("question {round}");
                let g = d.pick_for(&chat(&[(Role::System, s), (Role::User, &q)]), &[]).unwrap();
                assert_eq!((g.index(), g.route().reason), (home[t], Reason::Prefix), "tenant {t}");
                assert!(g.route().matched > 0.9, "{:?}", g.route());
            }
        }
        // A later turn repeats the earlier ones: the conversation follows its backend.
        let turn2 =
            chat(&[(Role::System, &sys[0]), (Role::User, "hello"), (Role::Assistant, "hi"), (Role::User, "more")]);
        assert_eq!(d.pick_for(&turn2, &[]).unwrap().index(), home[0]);
    }

    #[test]
    fn a_hot_prefix_spills_over_when_its_backend_is_far_ahead() {
        let d = routed(RoutingMode::Prefix);
        let hot = chat(&[(Role::System, &"one tenant's long system prompt ".repeat(40))]);
        let first = d.pick_for(&hot, &[]).unwrap();
        let home = first.index();
        let mut held = vec![first];
        for _ in 0..ScorerConfig::default().guard_pending {
            let g = d.pick_for(&hot, &[]).unwrap();
            assert_eq!((g.index(), g.route().reason), (home, Reason::Prefix));
            held.push(g);
        }
        let g = d.pick_for(&hot, &[]).unwrap();
        assert_eq!((g.index(), g.route().reason), (1 - home, Reason::Guard), "5 in flight vs 0");
        drop(held);
    }

    #[test]
    fn engine_load_read_by_the_scrape_steers_new_prefixes() {
        let d = routed(RoutingMode::Prefix);
        d.targets[0].load.set(affinity::EngineLoad { running: 2, waiting: 6, kv_usage: Some(0.9) });
        d.targets[1].load.set(affinity::EngineLoad { running: 1, waiting: 0, kv_usage: Some(0.2) });
        for i in 0..5 {
            let p = chat(&[(Role::User, &format!("fresh prompt {i} {}", "x".repeat(600)))]);
            assert_eq!(d.pick_for(&p, &[]).unwrap().index(), 1);
        }
    }

    #[test]
    fn round_robin_and_p2c_say_so() {
        let d = routed(RoutingMode::RoundRobin);
        let p = chat(&[(Role::User, "hi")]);
        let got: Vec<usize> = (0..4).map(|_| d.pick_for(&p, &[]).unwrap().index()).collect();
        assert_eq!(got, vec![0, 1, 0, 1]);
        assert_eq!(d.pick_for(&p, &[]).unwrap().route().reason, Reason::RoundRobin);
        assert_eq!(routed(RoutingMode::P2c).pick_for(&p, &[]).unwrap().route().reason, Reason::P2c);
    }

    #[test]
    fn aliases_resolve_and_duplicates_are_listed() {
        let r = Registry::new(vec![dep(&["a"])]).unwrap();
        assert_eq!(r.resolve("alias").unwrap().name, "d");
        assert!(r.resolve("nope").is_none());
        let errs = Registry::new(vec![dep(&["a"]), dep(&["b"])]).err().unwrap();
        assert_eq!(errs.len(), 2);
    }
}
