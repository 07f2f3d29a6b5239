//! The scorer: which eligible target serves a request, and why.
//!
//! `score = prefix_weight × match − queue_weight × queue − kv_weight × kv`, the shape of the
//! Gateway API inference extension's scorers: `match` is the share of the prompt's blocks the
//! target last served (0..1), `queue` its pending requests per unit of weight over the most
//! pending of the candidates (0..1; pending = the larger of the gateway's in-flight count and
//! the engine's own running + waiting), `kv` its KV-cache use (0..1, 0 when unknown). The
//! highest score wins; ties are drawn at random.
//!
//! A prompt no target holds any of, with a home key (see `prefix`), is *placed*: among the
//! targets within `guard_pending` requests of the least loaded, the one home to the fewest keys
//! (then the least loaded, then at random). Placement sticks — the prefix's next requests follow
//! it — so it balances what the engines keep cached rather than the load of the moment; the
//! bound keeps it from piling onto a busy target.
//!
//! The guard: when the best-matching target has more than `guard_pending` requests pending
//! beyond the least loaded other candidate, its match is ignored for this request — one hot
//! prefix cannot pile onto one backend; the request goes by load, and the index then learns
//! that the other backend holds the prefix too.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::ScorerConfig;
use super::load::EngineLoad;
use crate::balance::{self, Candidate};

/// Why a target was chosen (a closed set: it is a header value and a trace attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `routing = "p2c"`: weighted power of two choices on in-flight requests.
    P2c,
    /// `routing = "round_robin"`.
    RoundRobin,
    /// The target holds the longest prefix of the prompt, and is not overloaded.
    Prefix,
    /// No target holds any of the prompt, which has no home key: the least loaded.
    Load,
    /// No target holds any of the prompt: placed on the one home to the fewest prefixes.
    Place,
    /// A target held the prefix but had too many requests pending: the least loaded.
    Guard,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::P2c => "p2c",
            Reason::RoundRobin => "round_robin",
            Reason::Prefix => "prefix",
            Reason::Load => "load",
            Reason::Place => "place",
            Reason::Guard => "guard",
        }
    }
}

/// A routing decision's why: the reason and the share of the prompt the target held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    pub reason: Reason,
    /// 0..1; 0 outside prefix routing.
    pub matched: f32,
}

impl Route {
    pub fn of(reason: Reason) -> Self {
        Self { reason, matched: 0.0 }
    }
}

/// What the scorer knows of one target beyond its [`Candidate`] state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// Leading blocks of the prompt the target last served.
    pub depth: usize,
    /// The engine's own reading, if fresh.
    pub engine: Option<EngineLoad>,
    /// Home keys (prefixes) the target holds.
    pub homes: usize,
}

/// What the scorer knows of the prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prompt {
    /// Whole blocks.
    pub blocks: usize,
    /// Whether it has a home key (a first sight of it is placed).
    pub homed: bool,
}

/// The target for a request of `prompt`, or `None` when every breaker is open.
pub fn choose(
    cands: &[Candidate],
    signals: &[Signals],
    prompt: Prompt,
    cfg: &ScorerConfig,
    rng: &mut fastrand::Rng,
) -> Option<(usize, Route)> {
    let pool = balance::eligible(cands)?;
    let blocks = prompt.blocks;
    let pending = |i: usize| {
        let engine = signals.get(i).and_then(|s| s.engine).map_or(0, |e| e.pending()) as f64;
        (cands[i].inflight as f64).max(engine) / f64::from(cands[i].weight.max(1))
    };
    let matched = |i: usize| match blocks {
        0 => 0.0,
        n => signals.get(i).map_or(0, |s| s.depth.min(n)) as f64 / n as f64,
    };
    let best = pool.iter().copied().filter(|i| matched(*i) > 0.0).max_by(|a, b| matched(*a).total_cmp(&matched(*b)));
    if best.is_none() && prompt.homed {
        let floor = pool.iter().map(|i| pending(*i)).fold(f64::INFINITY, f64::min);
        let homes = |i: usize| signals.get(i).map_or(0, |s| s.homes);
        let within: Vec<usize> =
            pool.iter().copied().filter(|i| pending(*i) - floor <= f64::from(cfg.guard_pending)).collect();
        let fewest = within.iter().map(|i| homes(*i)).min()?;
        let lightest =
            within.iter().filter(|i| homes(**i) == fewest).map(|i| pending(*i)).fold(f64::INFINITY, f64::min);
        let ties: Vec<usize> =
            within.iter().copied().filter(|i| homes(*i) == fewest && pending(*i) - lightest < 1e-9).collect();
        let chosen = *ties.get(rng.usize(0..ties.len().max(1)))?;
        return Some((chosen, Route::of(Reason::Place)));
    }
    let least_other = |a: usize| pool.iter().filter(|i| **i != a).map(|i| pending(*i)).min_by(f64::total_cmp);
    let guarded = best.is_some_and(|a| least_other(a).is_some_and(|o| pending(a) - o > f64::from(cfg.guard_pending)));
    let most = pool.iter().map(|i| pending(*i)).fold(0.0, f64::max);
    let score = |i: usize| {
        let queue = if most > 0.0 { pending(i) / most } else { 0.0 };
        let kv = signals.get(i).and_then(|s| s.engine).and_then(|e| e.kv_usage).unwrap_or(0.0);
        let affinity = if guarded { 0.0 } else { cfg.prefix_weight * matched(i) };
        affinity - cfg.queue_weight * queue - cfg.kv_weight * f64::from(kv)
    };
    let top = pool.iter().map(|i| score(*i)).fold(f64::NEG_INFINITY, f64::max);
    let ties: Vec<usize> = pool.iter().copied().filter(|i| top - score(*i) < 1e-9).collect();
    let chosen = *ties.get(rng.usize(0..ties.len().max(1)))?;
    let reason = match (guarded, matched(chosen) > 0.0) {
        (true, _) => Reason::Guard,
        (false, true) => Reason::Prefix,
        (false, false) => Reason::Load,
    };
    Some((chosen, Route { reason, matched: matched(chosen) as f32 }))
}

/// The next eligible target in turn (`turn` counts the deployment's picks).
pub fn round_robin(cands: &[Candidate], turn: &AtomicUsize) -> Option<usize> {
    let pool = balance::eligible(cands)?;
    let n = turn.fetch_add(1, Ordering::Relaxed);
    pool.get(n % pool.len()).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(inflight: usize) -> Candidate {
        Candidate { weight: 1, inflight, available: true, healthy: true, tried: false }
    }

    fn s(depth: usize) -> Signals {
        Signals { depth, engine: None, homes: 0 }
    }

    fn homed(homes: usize) -> Signals {
        Signals { depth: 0, engine: None, homes }
    }

    fn p(blocks: usize) -> Prompt {
        Prompt { blocks, homed: false }
    }

    fn engine(running: u32, waiting: u32, kv: Option<f32>) -> Option<EngineLoad> {
        Some(EngineLoad { running, waiting, kv_usage: kv })
    }

    fn pick(cands: &[Candidate], sig: &[Signals], blocks: usize) -> (usize, Route) {
        let mut rng = fastrand::Rng::with_seed(5);
        choose(cands, sig, p(blocks), &ScorerConfig::default(), &mut rng).unwrap()
    }

    #[test]
    fn the_target_holding_the_prefix_wins_over_a_somewhat_less_loaded_one() {
        let (i, r) = pick(&[c(0), c(2)], &[s(0), s(8)], 10);
        assert_eq!((i, r.reason), (1, Reason::Prefix));
        assert!((r.matched - 0.8).abs() < 1e-6);
    }

    #[test]
    fn the_longer_match_wins() {
        let (i, r) = pick(&[c(1), c(1), c(1)], &[s(3), s(9), s(5)], 10);
        assert_eq!((i, r.reason), (1, Reason::Prefix));
    }

    #[test]
    fn the_guard_sends_a_hot_prefix_elsewhere_when_its_backend_is_far_ahead() {
        let gap = ScorerConfig::default().guard_pending as usize;
        let (i, r) = pick(&[c(gap), c(0)], &[s(10), s(0)], 10);
        assert_eq!((i, r.reason), (0, Reason::Prefix), "at the threshold affinity still holds");
        let (i, r) = pick(&[c(gap + 1), c(0)], &[s(10), s(0)], 10);
        assert_eq!((i, r.reason), (1, Reason::Guard), "beyond it, load decides");
        assert_eq!(r.matched, 0.0);
    }

    #[test]
    fn engine_queues_count_even_when_the_gateway_sent_nothing() {
        // Another replica filled target 0: its engine reports 9 waiting.
        let sig = [Signals { depth: 10, engine: engine(1, 9, None), homes: 0 }, s(0)];
        let (i, r) = pick(&[c(0), c(0)], &sig, 10);
        assert_eq!((i, r.reason), (1, Reason::Guard));
    }

    #[test]
    fn without_a_match_the_least_loaded_engine_wins_and_kv_pressure_counts() {
        let sig = [
            Signals { depth: 0, engine: engine(3, 0, None), homes: 0 },
            Signals { depth: 0, engine: engine(1, 0, None), homes: 0 },
        ];
        assert_eq!(pick(&[c(0), c(0)], &sig, 10), (1, Route::of(Reason::Load)));
        let sig = [
            Signals { depth: 0, engine: engine(1, 0, Some(0.1)), homes: 0 },
            Signals { depth: 0, engine: engine(1, 0, Some(0.95)), homes: 0 },
        ];
        assert_eq!(pick(&[c(1), c(1)], &sig, 10).0, 0, "equal queues: less KV pressure");
    }

    #[test]
    fn a_new_prefix_goes_to_the_target_home_to_the_fewest_within_the_load_bound() {
        let place = |cands: &[Candidate], sig: &[Signals]| {
            let mut rng = fastrand::Rng::with_seed(3);
            choose(cands, sig, Prompt { blocks: 10, homed: true }, &ScorerConfig::default(), &mut rng).unwrap()
        };
        let gap = ScorerConfig::default().guard_pending as usize;
        assert_eq!(
            place(&[c(0), c(gap)], &[homed(5), homed(2)]),
            (1, Route::of(Reason::Place)),
            "busier now, fewer homes"
        );
        assert_eq!(place(&[c(0), c(gap + 1)], &[homed(5), homed(2)]).0, 0, "beyond the bound, load decides");
        assert_eq!(place(&[c(3), c(1), c(2)], &[homed(1), homed(4), homed(1)]).0, 2, "equal homes: the less loaded");
        let held = [s(0), Signals { depth: 4, engine: None, homes: 9 }];
        assert_eq!(
            place(&[c(0), c(0)], &held),
            (1, Route { reason: Reason::Prefix, matched: 0.4 }),
            "a match is not placed"
        );
    }

    #[test]
    fn first_sights_together_spread_evenly() {
        // Eight prefixes seen at once, each sticking where it lands, while load comes and goes.
        let mut rng = fastrand::Rng::with_seed(11);
        let cfg = ScorerConfig::default();
        let mut homes = [0usize; 2];
        for k in 0..8 {
            let cands = [c(k % 3), c((k + 1) % 2)];
            let sig = [homed(homes[0]), homed(homes[1])];
            let (i, _) = choose(&cands, &sig, Prompt { blocks: 10, homed: true }, &cfg, &mut rng).unwrap();
            homes[i] += 1;
        }
        assert_eq!(homes, [4, 4]);
    }

    #[test]
    fn ties_spread_at_random() {
        let mut rng = fastrand::Rng::with_seed(9);
        let cfg = ScorerConfig::default();
        let mut seen = [0; 2];
        for _ in 0..100 {
            seen[choose(&[c(0), c(0)], &[s(0), s(0)], p(4), &cfg, &mut rng).unwrap().0] += 1;
        }
        assert!(seen[0] > 20 && seen[1] > 20, "{seen:?}");
    }

    #[test]
    fn open_breakers_and_tried_targets_are_respected() {
        let mut cands = [c(0), c(0)];
        cands[1].available = false;
        assert_eq!(pick(&cands, &[s(0), s(10)], 10).0, 0, "the match is behind an open breaker");
        cands[1].available = true;
        cands[1].tried = true;
        assert_eq!(pick(&cands, &[s(0), s(10)], 10).0, 0, "a retry goes elsewhere");
        cands[0].available = false;
        cands[1].available = false;
        let mut rng = fastrand::Rng::with_seed(1);
        assert!(choose(&cands, &[s(0), s(0)], p(10), &ScorerConfig::default(), &mut rng).is_none());
    }

    #[test]
    fn round_robin_takes_turns_among_the_eligible() {
        let turn = AtomicUsize::new(0);
        let mut cands = [c(5), c(0), c(0)];
        let got: Vec<usize> = (0..6).map(|_| round_robin(&cands, &turn).unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2], "in-flight counts do not matter");
        cands[1].available = false;
        let got: Vec<usize> = (0..4).map(|_| round_robin(&cands, &turn).unwrap()).collect();
        assert!(!got.contains(&1));
    }
}
