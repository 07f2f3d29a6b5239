//! Prefix affinity: a prompt cut into fixed-size byte blocks with chained hashes (block `i`'s
//! hash covers blocks `0..=i`, so equal hashes mean equal prefixes), and a bounded LRU index of
//! which target last served each block.
//!
//! The prompt is the conversation as the engine will see it, in order: each message's role and
//! text, with separators. A later turn of a conversation repeats the earlier turns, so its
//! blocks begin with theirs and it matches the target that served them — conversation affinity
//! (stored conversations included, whose history the gateway puts in front) comes with no
//! bookkeeping of its own. Only whole blocks count: a partial last block is not hashed, like an
//! engine's KV blocks.
//!
//! Invariant: the index is bounded (`capacity` block hashes, least recently used out first) and
//! lock-free to read; it is a hint — a wrong entry costs a cache miss, never a wrong answer.

use std::hash::{DefaultHasher, Hasher};

use moka::policy::EvictionPolicy;

use crate::backend::Input;

/// The chained hashes of `input`'s whole `block`-byte blocks, at most `max_blocks` of them.
pub fn prompt_blocks(input: &Input, block: usize, max_blocks: usize) -> Vec<u64> {
    let mut h = BlockHasher::new(block.max(1), max_blocks);
    match input {
        Input::Chat { messages, .. } => {
            for m in messages {
                h.write(m.role.as_str().as_bytes());
                h.write(b"\n");
                h.write(m.text().as_bytes());
                h.write(b"\n\x1e");
                if h.full() {
                    break;
                }
            }
        }
        Input::Text(t) => h.write(t.as_bytes()),
    }
    h.out
}

/// Cuts a byte stream into blocks as it arrives, hashing each block onto the previous hash.
struct BlockHasher {
    block: usize,
    max: usize,
    cur: DefaultHasher,
    /// Bytes in the current, unfinished block.
    filled: usize,
    out: Vec<u64>,
}

impl BlockHasher {
    fn new(block: usize, max: usize) -> Self {
        Self { block, max, cur: DefaultHasher::new(), filled: 0, out: Vec::new() }
    }

    fn full(&self) -> bool {
        self.out.len() >= self.max
    }

    fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.full() {
            let take = (self.block - self.filled).min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            self.cur.write(now);
            self.filled += take;
            bytes = rest;
            if self.filled == self.block {
                let hash = self.cur.finish();
                self.out.push(hash);
                self.cur = DefaultHasher::new();
                self.cur.write_u64(hash);
                self.filled = 0;
            }
        }
    }
}

/// Block hash → the target (index in its deployment) that last served a prompt with that block.
pub struct PrefixIndex {
    blocks: moka::sync::Cache<u64, u16>,
}

impl PrefixIndex {
    /// An index remembering at most `capacity` blocks.
    pub fn new(capacity: u64) -> Self {
        let blocks = moka::sync::Cache::builder().max_capacity(capacity).eviction_policy(EvictionPolicy::lru()).build();
        Self { blocks }
    }

    /// For each of `targets` targets, how many leading blocks of `hashes` it holds (the deepest
    /// block it served; chained hashes imply the blocks before it). Stops at the first block no
    /// target holds.
    pub fn depths(&self, hashes: &[u64], targets: usize) -> Vec<usize> {
        let mut depth = vec![0; targets];
        for (i, h) in hashes.iter().enumerate() {
            let Some(t) = self.blocks.get(h) else { break };
            if let Some(d) = depth.get_mut(usize::from(t)) {
                *d = i + 1;
            }
        }
        depth
    }

    /// `target` served a prompt of these blocks.
    pub fn record(&self, hashes: &[u64], target: usize) {
        let Ok(t) = u16::try_from(target) else { return };
        for h in hashes {
            self.blocks.insert(*h, t);
        }
    }

    /// Blocks remembered (approximate until pending maintenance runs).
    pub fn len(&self) -> u64 {
        self.blocks.run_pending_tasks();
        self.blocks.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferrogate_protocol::openai::{ChatMessage, Role};

    fn chat(msgs: &[(Role, &str)]) -> Input {
        let messages = msgs.iter().map(|(r, t)| ChatMessage::new(*r, *t)).collect();
        Input::Chat { messages, tools: None, tool_choice: None }
    }

    #[test]
    fn equal_prefixes_share_leading_blocks_and_only_whole_blocks_count() {
        let sys = "You are the support assistant of tenant seven. ".repeat(10);
        let (qa, qb) = ("first question ".repeat(8), "another one entirely ".repeat(8));
        let a = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, &qa)]), 64, 100);
        let b = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, &qb)]), 64, 100);
        let shared = (sys.len() + "system\n".len()) / 64;
        assert!(shared >= 7);
        assert_eq!(a[..shared], b[..shared], "the system prompt's blocks agree");
        assert_ne!(a.last(), b.last(), "a block spanning the user message differs");
        assert!(prompt_blocks(&Input::Text("short".into()), 64, 100).is_empty(), "no whole block");
        assert_eq!(prompt_blocks(&Input::Text("x".repeat(640)), 64, 3).len(), 3, "bounded");
    }

    #[test]
    fn a_block_hash_depends_on_everything_before_it() {
        let one = prompt_blocks(&Input::Text(format!("{}{}", "a".repeat(64), "b".repeat(64))), 64, 10);
        let two = prompt_blocks(&Input::Text(format!("{}{}", "c".repeat(64), "b".repeat(64))), 64, 10);
        assert_eq!(one.len(), 2);
        assert_ne!(one[1], two[1], "same bytes, different prefix");
    }

    #[test]
    fn the_index_tells_how_deep_each_target_holds_a_prompt() {
        let idx = PrefixIndex::new(1000);
        let p: Vec<u64> = (1..=10).collect();
        assert_eq!(idx.depths(&p, 2), vec![0, 0]);
        idx.record(&p[..6], 1);
        assert_eq!(idx.depths(&p, 2), vec![0, 6]);
        idx.record(&p[..3], 0);
        assert_eq!(idx.depths(&p, 2), vec![3, 6], "target 0 served the first 3 last");
        idx.record(&p, 0);
        assert_eq!(idx.depths(&p, 2), vec![10, 0]);
        assert_eq!(idx.depths(&[99, 1], 2), vec![0, 0], "a miss at block 0 ends the walk");
    }

    #[test]
    fn the_index_is_bounded_and_forgets_the_least_recently_used() {
        let idx = PrefixIndex::new(100);
        let old: Vec<u64> = (0..50).collect();
        idx.record(&old, 0);
        for round in 0..10u64 {
            let hot: Vec<u64> = (1000 + round * 50..1050 + round * 50).collect();
            idx.record(&hot, 1);
        }
        assert!(idx.len() <= 100, "{}", idx.len());
        assert_eq!(idx.depths(&old, 2), vec![0, 0], "the oldest prefix was evicted");
        let last: Vec<u64> = (1450..1500).collect();
        assert_eq!(idx.depths(&last, 2), vec![0, 50]);
    }
}
