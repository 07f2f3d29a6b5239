//! The semantic cache (opt-in per deployment, after the exact cache): a request whose last user
//! message means nearly the same as one answered before — cosine similarity of their embeddings
//! at or above the deployment's threshold — is answered with that earlier answer, provided
//! everything else that shapes the answer is identical (the [`SemanticScope`]: tenant,
//! deployment, and a digest of the earlier messages, tools and sampling parameters).
//!
//! [`SemanticIndex`] is the store: [`MemoryIndex`] here (in process, brute-force cosine over unit
//! vectors, bounded per scope, oldest out first), PostgreSQL with pgvector in `ferrogate-store`
//! so replicas share it.
//!
//! Invariant: vectors are unit length (the embedding backends normalize; [`unit`] checks), so a
//! dot product is the cosine; a lookup never crosses scopes — another tenant's answer, or an
//! answer to another conversation, is never served.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferrogate_protocol::openai::{ChatCompletionRequest, MessageContent, Role};
use sha2::{Digest, Sha256};

use super::entry::CachedCompletion;
use super::store::CacheError;

/// A deployment's semantic-cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticPolicy {
    /// The deployment that embeds the last user message.
    pub embedding: String,
    /// Cosine similarity at or above which an earlier answer is served.
    pub threshold: f32,
    /// How long an answer is served.
    pub ttl: Duration,
}

/// Where a lookup may look: one tenant, one deployment, one conversation prefix and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SemanticScope(String);

impl SemanticScope {
    /// A scope by its stored id (stores reading rows back; tests).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The scope as stored (hex digest, 64 characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request's last user message (what is embedded) and its scope; `None` when the request
/// has no user text last (a tool result, an assistant prefill, images only).
pub fn semantic_key(tenant: &str, deployment: &str, req: &ChatCompletionRequest) -> Option<(String, SemanticScope)> {
    let (last, earlier) = req.messages.split_last()?;
    if last.role != Role::User || !matches!(last.content, Some(MessageContent::Text(_))) {
        return None;
    }
    let text = last.text();
    if text.trim().is_empty() {
        return None;
    }
    let mut rest = req.clone();
    rest.messages = earlier.to_vec();
    rest.stream = None;
    rest.stream_options = None;
    rest.user = None;
    let mut h = Sha256::new();
    for part in [tenant.as_bytes(), deployment.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    // Everything but the last message: earlier turns, system prompt, tools, sampling, max_tokens.
    h.update(serde_json::to_vec(&rest).unwrap_or_default());
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some((text, SemanticScope(hex)))
}

/// The nearest cached answer above the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticHit {
    /// The cached answer.
    pub entry: CachedCompletion,
    /// Cosine similarity of the two embedded messages.
    pub similarity: f32,
}

/// Cached answers by scope and embedding.
#[async_trait]
pub trait SemanticIndex: Send + Sync {
    /// The most similar live entry in `scope` with similarity ≥ `threshold`.
    async fn nearest(
        &self,
        scope: &SemanticScope,
        vector: &[f32],
        threshold: f32,
    ) -> Result<Option<SemanticHit>, CacheError>;
    /// Adds an entry, served for `ttl`.
    async fn insert(
        &self,
        scope: &SemanticScope,
        vector: Vec<f32>,
        entry: CachedCompletion,
        ttl: Duration,
    ) -> Result<(), CacheError>;
}

/// Whether `v` is a unit vector (within float error): what the index assumes.
pub fn unit(v: &[f32]) -> bool {
    let n: f32 = v.iter().map(|x| x * x).sum();
    (n - 1.0).abs() < 1e-3
}

/// The candidate most similar to `query` at or above `threshold` (every index applies this one
/// rule), with its similarity.
pub fn best_match<'a, T>(
    candidates: impl Iterator<Item = (&'a [f32], T)>,
    query: &[f32],
    threshold: f32,
) -> Option<(f32, T)> {
    candidates.map(|(v, t)| (dot(v, query), t)).filter(|(s, _)| *s >= threshold).max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Dot product (the cosine of unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NEG_INFINITY; // another model's vectors never match
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

struct Item {
    vector: Vec<f32>,
    entry: CachedCompletion,
    expires: Instant,
}

/// The in-process index: per scope, at most `per_scope` entries (the oldest leaves first),
/// scanned linearly — a scope holds one conversation prefix's answers, so it stays small.
pub struct MemoryIndex {
    scopes: Mutex<HashMap<SemanticScope, VecDeque<Item>>>,
    per_scope: usize,
    max_scopes: usize,
}

impl MemoryIndex {
    /// An index holding up to `per_scope` entries in each of up to `max_scopes` scopes.
    pub fn new(per_scope: usize, max_scopes: usize) -> Self {
        Self { scopes: Mutex::new(HashMap::new()), per_scope: per_scope.max(1), max_scopes: max_scopes.max(1) }
    }
}

#[async_trait]
impl SemanticIndex for MemoryIndex {
    async fn nearest(
        &self,
        scope: &SemanticScope,
        vector: &[f32],
        threshold: f32,
    ) -> Result<Option<SemanticHit>, CacheError> {
        let mut scopes = self.scopes.lock().map_err(|_| CacheError::Unavailable("index lock poisoned".into()))?;
        let Some(items) = scopes.get_mut(scope) else { return Ok(None) };
        let now = Instant::now();
        items.retain(|i| i.expires > now);
        let best = best_match(items.iter().map(|i| (i.vector.as_slice(), i)), vector, threshold);
        Ok(best.map(|(similarity, i)| SemanticHit { entry: i.entry.clone(), similarity }))
    }

    async fn insert(
        &self,
        scope: &SemanticScope,
        vector: Vec<f32>,
        entry: CachedCompletion,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut scopes = self.scopes.lock().map_err(|_| CacheError::Unavailable("index lock poisoned".into()))?;
        if !scopes.contains_key(scope) && scopes.len() >= self.max_scopes {
            // Full: drop the scopes whose entries all expired, else one arbitrary scope.
            let now = Instant::now();
            scopes.retain(|_, items| items.iter().any(|i| i.expires > now));
            if scopes.len() >= self.max_scopes
                && let Some(k) = scopes.keys().next().cloned()
            {
                scopes.remove(&k);
            }
        }
        let items = scopes.entry(scope.clone()).or_default();
        if items.len() >= self.per_scope {
            items.pop_front();
        }
        items.push_back(Item { vector, entry, expires: Instant::now() + ttl });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use ferrogate_protocol::openai::{FinishReason, Usage};
    use serde_json::json;

    fn req(v: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn entry(text: &str) -> CachedCompletion {
        CachedCompletion {
            model: "m".into(),
            text: text.into(),
            tool_calls: None,
            finish_reason: FinishReason::Stop,
            usage: Usage::new(1, 1, None),
        }
    }

    fn unit_vec(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn scope_covers_everything_but_the_last_message() {
        let a = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "terse"}, {"role": "user", "content": "How tall is Everest?"}]}));
        let b = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "terse"}, {"role": "user", "content": "Everest's height?"}]}));
        let other_system = req(json!({"model": "m", "messages": [
            {"role": "system", "content": "verbose"}, {"role": "user", "content": "How tall is Everest?"}]}));
        let other_params = req(json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "system", "content": "terse"}, {"role": "user", "content": "How tall is Everest?"}]}));
        let (text, sa) = semantic_key("t", "d", &a).unwrap();
        assert_eq!(text, "How tall is Everest?");
        assert_eq!(semantic_key("t", "d", &b).unwrap().1, sa, "only the last message differs");
        assert_ne!(semantic_key("t2", "d", &a).unwrap().1, sa, "tenants never share");
        assert_ne!(semantic_key("t", "d2", &a).unwrap().1, sa);
        assert_ne!(semantic_key("t", "d", &other_system).unwrap().1, sa);
        assert_ne!(semantic_key("t", "d", &other_params).unwrap().1, sa);
        let assistant_last = req(json!({"model": "m", "messages": [{"role": "assistant", "content": "x"}]}));
        assert!(semantic_key("t", "d", &assistant_last).is_none());
    }

    #[tokio::test]
    async fn nearest_above_threshold_within_scope_only() {
        let idx = MemoryIndex::new(4, 8);
        let s1 = SemanticScope("a".into());
        let s2 = SemanticScope("b".into());
        let ttl = Duration::from_secs(60);
        idx.insert(&s1, unit_vec(&[1.0, 0.0, 0.0]), entry("x"), ttl).await.unwrap();
        idx.insert(&s1, unit_vec(&[0.0, 1.0, 0.0]), entry("y"), ttl).await.unwrap();
        let q = unit_vec(&[0.9, 0.1, 0.0]);
        let hit = idx.nearest(&s1, &q, 0.9).await.unwrap().unwrap();
        assert_eq!(hit.entry.text, "x");
        assert!(hit.similarity > 0.99);
        assert!(idx.nearest(&s1, &unit_vec(&[1.0, 1.0, 0.0]), 0.9).await.unwrap().is_none(), "0.707 < 0.9");
        assert!(idx.nearest(&s2, &q, 0.5).await.unwrap().is_none(), "another scope");
        assert!(idx.nearest(&s1, &[1.0, 0.0], 0.5).await.unwrap().is_none(), "another dimension");
    }

    #[tokio::test]
    async fn bounded_and_expiring() {
        let idx = MemoryIndex::new(2, 1);
        let s = SemanticScope("a".into());
        for (i, v) in [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]].iter().enumerate() {
            idx.insert(&s, v.to_vec(), entry(&i.to_string()), Duration::from_secs(60)).await.unwrap();
        }
        assert!(idx.nearest(&s, &[1.0, 0.0], 0.9).await.unwrap().is_none(), "the oldest left");
        assert!(idx.nearest(&s, &[0.0, 1.0], 0.9).await.unwrap().is_some());
        let s2 = SemanticScope("b".into());
        idx.insert(&s2, vec![1.0, 0.0], entry("z"), Duration::ZERO).await.unwrap();
        assert!(idx.nearest(&s2, &[1.0, 0.0], 0.5).await.unwrap().is_none(), "expired");
        assert!(idx.nearest(&s, &[0.0, 1.0], 0.9).await.unwrap().is_none(), "one scope at most");
    }
}
