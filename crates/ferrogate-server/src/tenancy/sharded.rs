//! A hash map split into independently locked shards: request paths read keys and quota slots
//! from it concurrently without one global lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::RwLock;

const SHARDS: usize = 16;

pub struct Sharded<K, V> {
    shards: [RwLock<HashMap<K, V>>; SHARDS],
    hasher: RandomState,
}

impl<K: Hash + Eq, V: Clone> Sharded<K, V> {
    pub fn new() -> Self {
        Self { shards: std::array::from_fn(|_| RwLock::new(HashMap::new())), hasher: RandomState::new() }
    }

    fn shard(&self, k: &K) -> &RwLock<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(k) as usize) % SHARDS]
    }

    pub fn get(&self, k: &K) -> Option<V> {
        self.shard(k).read().ok()?.get(k).cloned()
    }

    /// The value for `k`, inserting `make()` if there is none.
    pub fn get_or_insert_with(&self, k: K, make: impl FnOnce() -> V) -> V {
        if let Some(v) = self.get(&k) {
            return v;
        }
        let shard = self.shard(&k);
        match shard.write() {
            Ok(mut m) => m.entry(k).or_insert_with(make).clone(),
            Err(_) => make(),
        }
    }

    /// Inserts; a shard holding `cap` entries or more is emptied first (bounded memory for
    /// caches that anyone can grow, such as unknown-key digests).
    pub fn insert_bounded(&self, k: K, v: V, cap: usize) {
        if let Ok(mut m) = self.shard(&k).write() {
            if m.len() >= cap.div_ceil(SHARDS) {
                m.clear();
            }
            m.insert(k, v);
        }
    }

    pub fn insert(&self, k: K, v: V) {
        if let Ok(mut m) = self.shard(&k).write() {
            m.insert(k, v);
        }
    }

    /// Removes every entry for which `drop` is true.
    pub fn remove_where(&self, mut drop: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            if let Ok(mut m) = s.write() {
                let before = m.len();
                m.retain(|k, v| !drop(k, v));
                removed += before - m.len();
            }
        }
        removed
    }

    /// Takes every key out (the values are dropped).
    pub fn drain_keys(&self) -> Vec<K> {
        let mut out = Vec::new();
        for s in &self.shards {
            if let Ok(mut m) = s.write() {
                out.extend(m.drain().map(|(k, _)| k));
            }
        }
        out
    }

    pub fn clear(&self) {
        self.remove_where(|_, _| true);
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().map_or(0, |m| m.len())).sum()
    }
}

impl<K: Hash + Eq, V: Clone> Default for Sharded<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_bound() {
        let m: Sharded<u32, u32> = Sharded::new();
        assert_eq!(m.get_or_insert_with(1, || 10), 10);
        assert_eq!(m.get_or_insert_with(1, || 20), 10);
        m.insert(2, 20);
        assert_eq!(m.remove_where(|_, v| *v == 20), 1);
        assert_eq!(m.get(&2), None);
        for i in 0..1000 {
            m.insert_bounded(i, i, 64);
        }
        assert!(m.len() <= 64 + 16, "{}", m.len());
    }
}
