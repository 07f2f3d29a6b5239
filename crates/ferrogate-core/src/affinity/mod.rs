//! Engine-aware routing inside a deployment (`[deployments.NAME] routing`): besides the default
//! weighted power of two choices on in-flight requests (`balance`), round robin, and `prefix` —
//! the target that already holds the prompt's prefix in its KV cache, scored against the
//! engines' own queues and KV pressure (`score`), from a bounded index of which target served
//! which prompt blocks (`prefix`) and the load each engine reports (`load`, written by a scrape
//! loop the binary runs).
//!
//! Invariant: pure policy and lock-free state — no I/O here; a pick reads atomics and the
//! index, and a target the scrape cannot reach is scored on the gateway's in-flight count alone.

pub mod load;
pub mod prefix;
pub mod score;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{EngineLoad, LoadCell};
pub use prefix::{PrefixIndex, PromptBlocks, prompt_blocks};
pub use score::{Prompt, Reason, Route, Signals};

/// `[deployments.NAME] routing`: how a request picks among the deployment's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    /// Weighted power of two choices on in-flight requests.
    #[default]
    P2c,
    RoundRobin,
    /// Prefix affinity scored against engine load (see `score`).
    Prefix,
}

/// `[routing]`: the prefix scorer's knobs and the load scrape's pace (every deployment with
/// `routing = "prefix"` uses them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerConfig {
    /// Bytes per prompt block, the unit of prefix matching (about 64 tokens at 256).
    pub block_bytes: usize,
    /// Blocks hashed per request at most; a longer prompt matches on its first blocks.
    pub max_blocks: usize,
    /// Block hashes the index remembers per deployment (least recently used out first); about
    /// the blocks the deployment's engines together keep cached.
    pub index_blocks: u64,
    /// A prefix (home key: a tenant's system prompt, a conversation's history) unused this long
    /// no longer counts as held by its target when new prefixes are placed.
    pub home_idle_ms: u64,
    /// Weight of the prefix match (0..1) in the score.
    pub prefix_weight: f64,
    /// Weight of the queue (pending requests over the most pending candidate's, 0..1).
    pub queue_weight: f64,
    /// Weight of KV-cache use (0..1).
    pub kv_weight: f64,
    /// The guard: a matching target more than this many requests (per unit of weight) ahead of
    /// the least loaded other one is not preferred for its match.
    pub guard_pending: u32,
    /// How often each engine's load is read (`/metrics`, `/api/ps`, the embedded engine's stats).
    pub scrape_interval_ms: u64,
    /// A reading older than this is ignored (the engine stopped answering).
    pub load_max_age_ms: u64,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            block_bytes: 256,
            max_blocks: 512,
            index_blocks: 262_144,
            home_idle_ms: 120_000,
            prefix_weight: 2.0,
            queue_weight: 1.0,
            kv_weight: 1.0,
            guard_pending: 4,
            scrape_interval_ms: 250,
            load_max_age_ms: 2000,
        }
    }
}

impl ScorerConfig {
    /// Every problem, for the configuration check.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.block_bytes < 16 {
            out.push("routing.block_bytes must be at least 16".to_owned());
        }
        if self.max_blocks == 0 || self.index_blocks == 0 {
            out.push("routing.max_blocks and routing.index_blocks must be positive".to_owned());
        }
        if self.home_idle_ms == 0 {
            out.push("routing.home_idle_ms must be positive".to_owned());
        }
        let weights = [self.prefix_weight, self.queue_weight, self.kv_weight];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            out.push("routing.*_weight must be finite and not negative".to_owned());
        }
        if self.scrape_interval_ms < 10 {
            out.push("routing.scrape_interval_ms must be at least 10".to_owned());
        }
        out
    }
}

/// A deployment's routing state: its mode and what the mode keeps between requests.
pub struct Router {
    pub mode: RoutingMode,
    pub config: ScorerConfig,
    /// `prefix` only.
    pub index: Option<PrefixIndex>,
    /// `round_robin`: picks so far.
    pub turn: AtomicUsize,
}

impl Router {
    pub fn new(mode: RoutingMode, config: ScorerConfig) -> Self {
        let idle = Duration::from_millis(config.home_idle_ms);
        let index = (mode == RoutingMode::Prefix).then(|| PrefixIndex::new(config.index_blocks, idle));
        Self { mode, config, index, turn: AtomicUsize::new(0) }
    }
}
