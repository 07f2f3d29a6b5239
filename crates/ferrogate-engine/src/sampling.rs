//! Request sampling parameters → a llama.cpp sampler chain, one per sequence.
//!
//! Each sequence owns its chain (and so its RNG and penalty history): a seeded request draws
//! the same tokens whatever else is in the batch. Order as in llama.cpp's common sampler:
//! penalties → top-k → top-p → min-p → temperature → draw; temperature 0 is greedy.

use llama_cpp_2::sampling::LlamaSampler;

use crate::request::SamplingParams;

/// How many recent tokens the repetition/frequency/presence penalties look at (llama.cpp's
/// default `penalty_last_n`).
const PENALTY_LAST_N: i32 = 64;

/// llama.cpp draws a random seed when given this value (`LLAMA_DEFAULT_SEED`).
const RANDOM_SEED: u32 = u32::MAX;

/// `grammar` (constrained output) goes first: every later stage sees only allowed tokens.
pub(crate) fn sampler_for(params: &SamplingParams, n_vocab: i32, grammar: Option<LlamaSampler>) -> LlamaSampler {
    let mut chain = Vec::with_capacity(7);
    chain.extend(grammar);
    if has_penalties(params) {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_LAST_N,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(params.top_k));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(seed32(params.seed)));
    }
    LlamaSampler::chain(chain, true)
}

/// Greedy without penalties: the token is the argmax of the logits, read in place — no
/// candidate array of the whole vocabulary is built per token, as `llama_sampler_sample` does.
pub(crate) fn is_plain_greedy(params: &SamplingParams) -> bool {
    params.temperature <= 0.0 && !has_penalties(params)
}

/// The index of the first largest logit (llama.cpp's greedy sampler picks the same one).
pub(crate) fn argmax(logits: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    i32::try_from(best).unwrap_or(0)
}

fn has_penalties(p: &SamplingParams) -> bool {
    p.repeat_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0
}

/// Folds a 64-bit request seed into llama.cpp's 32-bit one, never onto the "random" value.
fn seed32(seed: Option<u64>) -> u32 {
    match seed {
        None => RANDOM_SEED,
        Some(s) => {
            let folded = (s as u32) ^ ((s >> 32) as u32);
            if folded == RANDOM_SEED { RANDOM_SEED - 1 } else { folded }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_fold_deterministically_and_avoid_the_random_marker() {
        assert_eq!(seed32(Some(42)), 42);
        assert_eq!(seed32(Some(42)), seed32(Some(42)));
        assert_ne!(seed32(Some(1)), seed32(Some(2)));
        assert_eq!(seed32(None), RANDOM_SEED);
        assert_ne!(seed32(Some(u64::from(u32::MAX))), RANDOM_SEED);
    }

    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -2.0]), 1);
        assert!(is_plain_greedy(&SamplingParams { temperature: 0.0, ..SamplingParams::default() }));
        let penalized = SamplingParams { temperature: 0.0, repeat_penalty: 1.1, ..SamplingParams::default() };
        assert!(!is_plain_greedy(&penalized));
    }

    #[test]
    fn neutral_penalties_are_skipped() {
        assert!(!has_penalties(&SamplingParams::default()));
        let p = SamplingParams { presence_penalty: 0.5, ..SamplingParams::default() };
        assert!(has_penalties(&p));
    }
}
