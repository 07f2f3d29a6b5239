//! The exact-match response cache: the key ([`cache_key`], SHA-256 over everything that changes
//! the answer, tenant and deployment included), the cacheability rule ([`decide`], with the
//! client's [`CacheControl`]), the cached entry ([`CachedCompletion`]: answer again as JSON or
//! replay as a stream), and the [`ResponseCache`] trait with its in-process implementation
//! ([`MemoryCache`], moka); `ferrogate-store` has the Redis one, and [`TieredCache`] puts a near
//! (in-process) cache in front of it.
//!
//! How the edge uses it, per chat request (after routing, so the deployment is known):
//! 1. [`decide`] with the deployment's [`CachePolicy`] and `CacheControl::parse(headers)`;
//!    `Bypass` → no cache, no `x-ferrogate-cache` header.
//! 2. `Use { read: true }` → [`cache_key`] (the gateway: [`KeyParts::of_planned`], once, where
//!    the request is planned) → [`ResponseCache::get`]: a hit answers with
//!    [`CachedCompletion::to_completion`] or [`CachedCompletion::to_chunks`] and
//!    `x-ferrogate-cache: hit`; otherwise `miss`, and the request runs.
//! 3. settle: on a miss with a successful, finished answer, [`ResponseCache::put`] with the
//!    policy's TTL. A cache error is a miss (logged, counted), never a failed request.
//!
//! Invariant: no Redis or HTTP types here.

#![warn(missing_docs)]

pub mod control;
pub mod entry;
pub mod key;
pub mod memory;
pub mod policy;
pub mod semantic;
pub mod store;
pub mod tiered;

pub use control::CacheControl;
pub use entry::CachedCompletion;
pub use key::{CacheKey, KeyParts, cache_key};
pub use memory::MemoryCache;
pub use policy::{Bypass, CachePolicy, CacheUse, Sampling, decide, decide_sampling, is_deterministic, wants_logprobs};
pub use semantic::{MemoryIndex, SemanticHit, SemanticIndex, SemanticPolicy, SemanticScope, semantic_key};
pub use store::{CacheError, ResponseCache};
pub use tiered::TieredCache;
