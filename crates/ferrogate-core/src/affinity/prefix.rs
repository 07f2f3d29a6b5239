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
//! A prompt's *home key* names the part an engine keeps for the next request of the same kind:
//! the blocks before the last message (a tenant's system prompt, a conversation's history), or a
//! plain prompt's first block. The index counts the keys each target is home to, so a prefix seen
//! for the first time goes to the target holding the fewest — placement balances what stays in
//! the engines' caches, not the load of the moment (which passes, while the placement sticks).
//!
//! Invariant: the index is bounded (`capacity` block hashes, least recently used out first;
//! home keys forgotten after `home_idle` unused) and lock-free to read, the per-target home
//! counts behind a short lock; it is a hint — a wrong entry costs a cache miss, never a wrong
//! answer.

use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use crate::backend::Input;

/// A prompt cut into blocks: the chained hashes and its home key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptBlocks {
    pub hashes: Vec<u64>,
    /// The hash of the last whole block before the last message (a plain prompt: its first
    /// block); `None` when that part holds no whole block.
    pub home: Option<u64>,
}

/// The chained hashes of `input`'s whole `block`-byte blocks, at most `max_blocks` of them.
pub fn prompt_blocks(input: &Input, block: usize, max_blocks: usize) -> PromptBlocks {
    let mut h = BlockHasher::new(block.max(1), max_blocks);
    // Blocks before the last message; a prompt cut off by `max_blocks` earlier: all of them.
    let mut stem = usize::MAX;
    match input {
        Input::Chat { messages, .. } => {
            for (i, m) in messages.iter().enumerate() {
                if i + 1 == messages.len() {
                    stem = h.out.len();
                }
                h.write(m.role.as_str().as_bytes());
                h.write(b"\n");
                h.write(m.text().as_bytes());
                h.write(b"\n\x1e");
                if h.full() {
                    break;
                }
            }
        }
        Input::Text(t) => {
            h.write(t.as_bytes());
            stem = h.out.len().min(1);
        }
    }
    let stem = stem.min(h.out.len());
    let home = stem.checked_sub(1).and_then(|i| h.out.get(i)).copied();
    PromptBlocks { hashes: h.out, home }
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

/// Block hash → the target (index in its deployment) that last served a prompt with that block;
/// home key → the target it lives on, with a count per target.
pub struct PrefixIndex {
    blocks: moka::sync::Cache<u64, u16>,
    homes: moka::sync::Cache<u64, u16>,
    /// Home keys per target (index = target); kept by `settle` and the home cache's removals.
    counts: Arc<Mutex<Vec<usize>>>,
}

impl PrefixIndex {
    /// An index remembering at most `capacity` blocks, and home keys used within `home_idle`
    /// (at most `capacity` of them too).
    pub fn new(capacity: u64, home_idle: Duration) -> Self {
        let blocks = moka::sync::Cache::builder().max_capacity(capacity).eviction_policy(EvictionPolicy::lru()).build();
        let counts: Arc<Mutex<Vec<usize>>> = Arc::default();
        let gone = Arc::clone(&counts);
        let homes = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_idle(home_idle)
            .eviction_listener(move |_key, target: u16, _cause: RemovalCause| {
                let mut c = gone.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(n) = c.get_mut(usize::from(target)) {
                    *n = n.saturating_sub(1);
                }
            })
            .build();
        Self { blocks, homes, counts }
    }

    /// `key` lives on `target` from now on (a use of a key already there only refreshes it).
    pub fn settle(&self, key: u64, target: usize) {
        let Ok(t) = u16::try_from(target) else { return };
        if self.homes.get(&key) == Some(t) {
            return;
        }
        {
            let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            if c.len() <= target {
                c.resize(target + 1, 0);
            }
            c[target] += 1;
        }
        // A key that lived elsewhere is replaced: the listener takes it off the old target.
        self.homes.insert(key, t);
    }

    /// How many home keys each of `targets` targets holds.
    pub fn homes(&self, targets: usize) -> Vec<usize> {
        let c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        (0..targets).map(|i| c.get(i).copied().unwrap_or(0)).collect()
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
        self.homes.run_pending_tasks();
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
        let a = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, &qa)]), 64, 100).hashes;
        let b = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, &qb)]), 64, 100).hashes;
        let shared = (sys.len() + "system\n".len()) / 64;
        assert!(shared >= 7);
        assert_eq!(a[..shared], b[..shared], "the system prompt's blocks agree");
        assert_ne!(a.last(), b.last(), "a block spanning the user message differs");
        assert_eq!(prompt_blocks(&Input::Text("short".into()), 64, 100), PromptBlocks::default(), "no whole block");
        assert_eq!(prompt_blocks(&Input::Text("x".repeat(640)), 64, 3).hashes.len(), 3, "bounded");
    }

    #[test]
    fn a_block_hash_depends_on_everything_before_it() {
        let one = prompt_blocks(&Input::Text(format!("{}{}", "a".repeat(64), "b".repeat(64))), 64, 10).hashes;
        let two = prompt_blocks(&Input::Text(format!("{}{}", "c".repeat(64), "b".repeat(64))), 64, 10).hashes;
        assert_eq!(one.len(), 2);
        assert_ne!(one[1], two[1], "same bytes, different prefix");
    }

    #[test]
    fn the_index_tells_how_deep_each_target_holds_a_prompt() {
        let idx = PrefixIndex::new(1000, Duration::from_secs(60));
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
        let idx = PrefixIndex::new(100, Duration::from_secs(60));
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

    #[test]
    fn the_home_key_is_the_part_before_the_last_message() {
        let sys = "You are the support assistant of tenant seven. ".repeat(10);
        let a = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, &"how do I pay? ".repeat(20))]), 64, 100);
        let b = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, "and refunds?")]), 64, 100);
        let stem = (sys.len() + "system\n".len() + "\n\x1e".len()) / 64;
        assert_eq!(a.home, Some(a.hashes[stem - 1]), "the system prompt's last whole block");
        assert_eq!(a.home, b.home, "one tenant, one home, whatever the question");
        let other =
            prompt_blocks(&chat(&[(Role::System, &sys.replace("seven", "eight")), (Role::User, "hi")]), 64, 100);
        assert_ne!(other.home, a.home);
        assert_eq!(prompt_blocks(&chat(&[(Role::User, &"q".repeat(300))]), 64, 100).home, None, "one message: no stem");
        let cut = prompt_blocks(&chat(&[(Role::System, &sys), (Role::User, "hi")]), 64, 2);
        assert_eq!(cut.home, Some(cut.hashes[1]), "cut off by max_blocks: the blocks there are");
        let text = prompt_blocks(&Input::Text("x".repeat(200)), 64, 100);
        assert_eq!(text.home, Some(text.hashes[0]), "a plain prompt: its first block");
    }

    #[test]
    fn homes_are_counted_per_target_and_move_with_their_key() {
        let idx = PrefixIndex::new(100, Duration::from_secs(60));
        idx.settle(1, 0);
        idx.settle(2, 0);
        idx.settle(2, 0);
        idx.settle(3, 1);
        assert_eq!(idx.homes(3), vec![2, 1, 0], "a key used again is not counted twice");
        idx.settle(2, 1);
        idx.homes.run_pending_tasks();
        assert_eq!(idx.homes(2), vec![1, 2], "a key that moved left its old target");
    }

    #[test]
    fn idle_homes_are_forgotten() {
        let idx = PrefixIndex::new(100, Duration::from_millis(30));
        idx.settle(1, 0);
        idx.settle(2, 1);
        std::thread::sleep(Duration::from_millis(80));
        idx.homes.run_pending_tasks();
        assert_eq!(idx.homes(2), vec![0, 0]);
    }
}
