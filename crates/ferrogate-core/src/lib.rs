//! The gateway's domain: what a backend is, how a model name becomes a deployment and a backend,
//! how streams are bounded in time, who may call (tenants, keys, usage), and the errors of each
//! stage with their blame.
//!
//! Invariant: no HTTP framework, database or engine types here — the server crate adapts axum to
//! these functions, backend crates implement [`Backend`], and `ferrogate-store` implements the
//! [`tenancy`] store traits.

pub mod affinity;
pub mod backend;
pub mod background;
pub mod balance;
pub mod blame;
pub mod breaker;
pub mod cache;
pub mod chunk;
pub mod conversations;
pub mod error;
pub mod guardrails;
mod id;
pub mod jobs;
pub mod limits;
pub mod obs;
pub mod queue;
pub mod routing;
pub mod stream;
pub mod tenancy;
pub mod tier;
pub mod tokens;

pub use backend::{
    Backend, BackendError, Capabilities, Completion, EmbedItem, EmbedOutput, EmbedRequest, EventStream, GenParams,
    Health, InferenceRequest, Input, ModelState, StreamEvent, TimeoutKind,
};
pub use blame::Blame;
pub use error::GatewayError;
pub use obs::{BackendStats, EnginePhases, RequestObs};
pub use routing::{Deployment, PickError, Policy, Registry, Target, TargetGuard};
