//! Sequence slots: one per llama.cpp sequence id, holding the tokens whose KV is cached for it
//! and, while busy, the generation running in it.
//!
//! Invariant: `cached` lists, in position order, exactly the tokens in the KV cache for this
//! sequence id. A free slot keeps its cache for prefix reuse until another prompt takes it.

use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use crate::request::GenEvent;
use crate::stop::StopMatcher;
use crate::utf8::Utf8Decoder;

pub(crate) struct Slot {
    /// The llama.cpp sequence id.
    pub id: i32,
    /// Tokens in the KV cache for `id`, position i at index i.
    pub cached: Vec<LlamaToken>,
    /// Scheduler tick of the last release: the least recently used free slot is reused first.
    pub last_used: u64,
    pub seq: Option<Sequence>,
}

/// A request running in a slot.
pub(crate) struct Sequence {
    pub tx: UnboundedSender<GenEvent>,
    pub prompt: Vec<LlamaToken>,
    /// Prompt tokens in the KV cache so far (reused prefix + prefilled chunks).
    pub prompt_done: usize,
    pub cached_tokens: u32,
    pub sampler: LlamaSampler,
    /// Plain greedy: sampled by an in-place argmax instead of `sampler`.
    pub greedy: bool,
    /// Sampled but not yet decoded: goes into the next batch.
    pub pending: Option<LlamaToken>,
    pub generated: u32,
    pub max_tokens: u32,
    pub utf8: Utf8Decoder,
    pub stop: StopMatcher,
    /// Alternatives per token when the request asked for log probabilities.
    pub logprobs: Option<u8>,
    /// Where this sequence's logits are in the batch being decoded (not its sequence id).
    pub logits_at: Option<i32>,
    /// Admission order: prefill chunks go to the oldest prompt first.
    pub admitted: u64,
    pub started: Instant,
}

impl Sequence {
    pub(crate) fn prompt_tokens(&self) -> u32 {
        u32::try_from(self.prompt.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn in_prefill(&self) -> bool {
        self.prompt_done < self.prompt.len()
    }
}

impl Slot {
    pub(crate) fn new(id: i32) -> Self {
        Self { id, cached: Vec::new(), last_used: 0, seq: None }
    }

    pub(crate) fn is_free(&self) -> bool {
        self.seq.is_none()
    }
}

pub(crate) fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The free slot for `prompt`: the longest cached common prefix (as llama-server does), else
/// the least recently used. Returns (slot index, common prefix length).
pub(crate) fn pick_slot(slots: &[Slot], prompt: &[LlamaToken], use_cache: bool) -> Option<(usize, usize)> {
    let free = || slots.iter().enumerate().filter(|(_, s)| s.is_free());
    if use_cache {
        let best = free()
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt)))
            .filter(|&(_, lcp)| lcp > 0)
            .max_by_key(|&(i, lcp)| (lcp, std::cmp::Reverse(i)));
        if best.is_some() {
            return best;
        }
    }
    free().min_by_key(|(_, s)| s.last_used).map(|(i, _)| (i, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().copied().map(LlamaToken::new).collect()
    }

    fn slot(id: i32, cached: &[i32], last_used: u64) -> Slot {
        Slot { cached: toks(cached), last_used, ..Slot::new(id) }
    }

    #[test]
    fn prefix_length() {
        assert_eq!(common_prefix(&toks(&[1, 2, 3]), &toks(&[1, 2, 4])), 2);
        assert_eq!(common_prefix(&toks(&[]), &toks(&[1])), 0);
    }

    #[test]
    fn longest_prefix_wins() {
        let slots = [slot(0, &[1, 9], 5), slot(1, &[1, 2, 3], 9), slot(2, &[], 0)];
        assert_eq!(pick_slot(&slots, &toks(&[1, 2, 3, 4]), true), Some((1, 3)));
    }

    #[test]
    fn without_a_match_the_least_recently_used_free_slot_is_taken() {
        let slots = [slot(0, &[7], 5), slot(1, &[8], 2), slot(2, &[9], 3)];
        assert_eq!(pick_slot(&slots, &toks(&[1]), true), Some((1, 0)));
    }

    #[test]
    fn cache_off_ignores_prefixes() {
        let slots = [slot(0, &[1, 2], 5), slot(1, &[], 1)];
        assert_eq!(pick_slot(&slots, &toks(&[1, 2]), false), Some((1, 0)));
    }

    #[test]
    fn no_free_slot() {
        assert_eq!(pick_slot(&[], &toks(&[1]), true), None);
    }
}
