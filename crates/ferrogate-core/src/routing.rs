//! Model name → deployment → backend. A deployment is what clients name (`model`); it has one or
//! more targets (backend + the model name that backend knows). Picking is least-outstanding-
//! requests among healthy targets, ties broken round-robin.
//!
//! Invariant: the registry is immutable after start-up (lock-free reads on the hot path);
//! in-flight counts are atomics released by a guard, so a cancelled request never leaks one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::backend::Backend;

pub struct Target {
    pub backend: Arc<dyn Backend>,
    /// The model name sent to this backend.
    pub upstream_model: String,
    inflight: AtomicUsize,
    /// Last active health check result; unhealthy targets are skipped while others are healthy.
    healthy: AtomicBool,
}

impl Target {
    pub fn new(backend: Arc<dyn Backend>, upstream_model: impl Into<String>) -> Self {
        Self {
            backend,
            upstream_model: upstream_model.into(),
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

pub struct Deployment {
    pub name: String,
    pub aliases: Vec<String>,
    pub targets: Vec<Arc<Target>>,
    /// Unix seconds, reported as `created` in `/v1/models`.
    pub created: u64,
    next: AtomicUsize,
}

impl Deployment {
    pub fn new(name: impl Into<String>, aliases: Vec<String>, targets: Vec<Arc<Target>>, created: u64) -> Self {
        Self { name: name.into(), aliases, targets, created, next: AtomicUsize::new(0) }
    }

    /// Picks the target with the fewest requests in flight, preferring healthy ones.
    pub fn pick(&self) -> Option<TargetGuard> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let any_healthy = self.targets.iter().any(|t| t.is_healthy());
        let best = (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .filter(|t| !any_healthy || t.is_healthy())
            .min_by_key(|t| t.inflight())?;
        best.inflight.fetch_add(1, Ordering::Relaxed);
        Some(TargetGuard { target: Arc::clone(best) })
    }
}

/// Holds one in-flight slot of a target; released on drop (success, error or cancel).
pub struct TargetGuard {
    target: Arc<Target>,
}

impl TargetGuard {
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl Drop for TargetGuard {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All deployments, addressable by name and alias.
#[derive(Default)]
pub struct Registry {
    deployments: Vec<Arc<Deployment>>,
    by_name: HashMap<String, Arc<Deployment>>,
}

impl Registry {
    /// Fails with every name that is used twice.
    pub fn new(deployments: Vec<Deployment>) -> Result<Self, Vec<String>> {
        let mut by_name = HashMap::new();
        let mut dupes = Vec::new();
        let deployments: Vec<Arc<Deployment>> = deployments.into_iter().map(Arc::new).collect();
        for d in &deployments {
            for name in std::iter::once(&d.name).chain(&d.aliases) {
                if by_name.insert(name.clone(), Arc::clone(d)).is_some() {
                    dupes.push(format!("model name '{name}' is used by more than one deployment"));
                }
            }
        }
        if dupes.is_empty() { Ok(Self { deployments, by_name }) } else { Err(dupes) }
    }

    pub fn resolve(&self, model: &str) -> Option<&Arc<Deployment>> {
        self.by_name.get(model)
    }

    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::*;
    use async_trait::async_trait;

    struct Nop(&'static str);
    #[async_trait]
    impl Backend for Nop {
        fn name(&self) -> &str {
            self.0
        }
        fn kind(&self) -> &'static str {
            "nop"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { chat: true, text_completion: true, tools: false, images: false, usage: true }
        }
        async fn chat(&self, _: InferenceRequest) -> Result<Completion, BackendError> {
            Err(BackendError::Internal("nop".into()))
        }
        async fn chat_stream(&self, _: InferenceRequest) -> Result<EventStream, BackendError> {
            Err(BackendError::Internal("nop".into()))
        }
        async fn health(&self) -> Health {
            Health::Healthy
        }
        async fn models(&self) -> Result<Vec<String>, BackendError> {
            Ok(vec![])
        }
    }

    fn dep(names: &[&'static str]) -> Deployment {
        let targets = names.iter().map(|n| Arc::new(Target::new(Arc::new(Nop(n)), "m"))).collect();
        Deployment::new("d", vec!["alias".into()], targets, 0)
    }

    #[test]
    fn least_outstanding_and_guard_release() {
        let d = dep(&["a", "b"]);
        let g1 = d.pick().unwrap();
        let g2 = d.pick().unwrap();
        assert_ne!(g1.target().backend.name(), g2.target().backend.name());
        let first = g1.target().backend.name().to_owned();
        drop(g1);
        let g3 = d.pick().unwrap();
        assert_eq!(g3.target().backend.name(), first, "the idle target is preferred");
        assert!(d.targets.iter().map(|t| t.inflight()).sum::<usize>() == 2);
    }

    #[test]
    fn unhealthy_skipped_while_a_healthy_one_exists() {
        let d = dep(&["a", "b"]);
        d.targets[0].set_healthy(false);
        for _ in 0..4 {
            assert_eq!(d.pick().unwrap().target().backend.name(), "b");
        }
        d.targets[1].set_healthy(false);
        assert!(d.pick().is_some(), "all unhealthy: still try rather than refuse");
    }

    #[test]
    fn aliases_resolve_and_duplicates_are_listed() {
        let r = Registry::new(vec![dep(&["a"])]).unwrap();
        assert_eq!(r.resolve("alias").unwrap().name, "d");
        assert!(r.resolve("nope").is_none());
        let errs = Registry::new(vec![dep(&["a"]), dep(&["b"])]).err().unwrap();
        assert_eq!(errs.len(), 2);
    }
}
