//! The pool's budget rule, pure: may a model load now, and which idle models must be unloaded
//! first (least recently used first; never one with requests in flight, never a pinned one).

use serde::Deserialize;
use tokio::time::Instant;

/// `[engine]`: how many embedded models may be loaded at once. Unset: no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Models loaded (or loading) at once.
    pub max_loaded_models: Option<usize>,
    /// Bytes of weights + KV cache loaded at once (a model not loaded yet counts its file size).
    pub max_loaded_bytes: Option<u64>,
}

impl PoolConfig {
    fn fits(&self, models: usize, bytes: u64) -> bool {
        self.max_loaded_models.is_none_or(|max| models <= max) && self.max_loaded_bytes.is_none_or(|max| bytes <= max)
    }
}

/// What the rule needs to know of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    /// Loaded, loading, or about to load: it takes room.
    pub occupies: bool,
    /// Loaded, idle (no request in flight) and not pinned: it may be unloaded to make room.
    pub evictable: bool,
    pub last_used: Instant,
    pub bytes: u64,
}

/// The models to unload so that `want` fits, least recently used first; `Some(vec![])` when it
/// fits as things are; `None` when it cannot fit until something changes (requests finish).
pub(crate) fn make_room(limits: &PoolConfig, models: &[View], want: usize) -> Option<Vec<usize>> {
    let others = models.iter().enumerate().filter(|(i, m)| *i != want && m.occupies);
    let (mut count, mut bytes) = others.fold((1, models.get(want)?.bytes), |(c, b), (_, m)| (c + 1, b + m.bytes));
    let mut idle: Vec<usize> = (0..models.len()).filter(|&i| i != want && models[i].evictable).collect();
    idle.sort_by_key(|&i| models[i].last_used);
    let mut victims = Vec::new();
    for i in idle {
        if limits.fits(count, bytes) {
            break;
        }
        victims.push(i);
        count -= 1;
        bytes = bytes.saturating_sub(models[i].bytes);
    }
    limits.fits(count, bytes).then_some(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn view(occupies: bool, evictable: bool, age_s: u64, bytes: u64) -> View {
        let now = Instant::now() + Duration::from_secs(1000);
        View { occupies, evictable, last_used: now - Duration::from_secs(age_s), bytes }
    }

    const ONE: PoolConfig = PoolConfig { max_loaded_models: Some(1), max_loaded_bytes: None };

    #[test]
    fn no_limit_loads_without_unloading() {
        let models = [view(true, true, 5, 10), view(false, false, 0, 10)];
        assert_eq!(make_room(&PoolConfig::default(), &models, 1), Some(vec![]));
    }

    #[test]
    fn the_least_recently_used_idle_model_goes_first() {
        let two = PoolConfig { max_loaded_models: Some(2), ..ONE };
        let models = [view(true, true, 5, 1), view(true, true, 50, 1), view(false, false, 0, 1)];
        assert_eq!(make_room(&two, &models, 2), Some(vec![1]));
    }

    #[test]
    fn a_model_in_use_or_pinned_is_never_unloaded() {
        let busy = [view(true, false, 500, 1), view(false, false, 0, 1)];
        assert_eq!(make_room(&ONE, &busy, 1), None);
    }

    #[test]
    fn bytes_bound_unloads_until_the_new_model_fits() {
        let bytes = PoolConfig { max_loaded_models: None, max_loaded_bytes: Some(100) };
        let models =
            [view(true, true, 9, 40), view(true, true, 8, 40), view(true, true, 7, 40), view(false, false, 0, 50)];
        assert_eq!(make_room(&bytes, &models, 3), Some(vec![0, 1]));
        let too_big = [view(false, false, 0, 101)];
        assert_eq!(make_room(&bytes, &too_big, 0), None);
    }

    #[test]
    fn a_model_already_loading_counts_against_the_limit() {
        let models = [view(true, false, 0, 1), view(false, false, 0, 1)];
        assert_eq!(make_room(&ONE, &models, 1), None);
    }
}
