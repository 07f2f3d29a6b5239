//! The three names of a model, as distinct types so one is never taken for another:
//! - [`RequestedModel`]: what the client asked for (`smollm2`, an alias, the tiered `auto`) —
//!   checked against the key's scopes, recorded as the ledger's `model_requested`;
//! - [`DeploymentName`]: the configured deployment that serves (the tier's choice, or a
//!   fallback) — the metrics label and the name responses echo for `auto`;
//! - [`UpstreamModel`]: the model name the chosen backend is sent (`upstream_model`) — the
//!   ledger's `model_served`.

use std::fmt;
use std::sync::Arc;

macro_rules! name {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $t(Arc<str>);

        impl $t {
            pub fn new(name: impl Into<Arc<str>>) -> Self {
                Self(name.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// The backend serving a request (the current attempt's): the configured backend itself, so
/// naming it per request copies nothing.
#[derive(Clone, Default)]
pub struct BackendName(Option<Arc<dyn ferrogate_core::Backend>>);

impl BackendName {
    pub fn of(backend: &Arc<dyn ferrogate_core::Backend>) -> Self {
        Self(Some(Arc::clone(backend)))
    }

    /// The configured name; empty before any attempt.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", |b| b.name())
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

name!(
    /// The model name the client asked for.
    RequestedModel
);
name!(
    /// A configured deployment's name.
    DeploymentName
);
name!(
    /// The model name a backend is sent.
    UpstreamModel
);
