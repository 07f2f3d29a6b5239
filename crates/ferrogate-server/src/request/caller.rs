//! Who is calling (decided by the auth layer) and the per-request ledger slot, carried in
//! `RequestCx` so the pipeline can check scopes and caps (pure) and settle the usage row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ferrogate_core::Deployment;
use ferrogate_core::tenancy::{KeyId, KeyLookup, TenantId};

use crate::error::ApiError;

/// The authenticated identity.
#[derive(Clone)]
pub enum Principal {
    /// A static `server.api_keys` key: the single-tenant case, no scopes or limits.
    Static,
    /// A stored key and its tenant, as cached at authentication.
    Key(Arc<KeyLookup>),
}

impl Principal {
    pub fn key(&self) -> Option<&Arc<KeyLookup>> {
        match self {
            Principal::Static => None,
            Principal::Key(k) => Some(k),
        }
    }

    pub fn tenant_id(&self) -> Option<&TenantId> {
        self.key().map(|k| &k.tenant.id)
    }

    pub fn key_id(&self) -> Option<&KeyId> {
        self.key().map(|k| &k.key.id)
    }
}

/// What the pipeline learns from the auth layer.
pub struct Caller {
    pub principal: Principal,
    /// Present when this request must leave exactly one usage row.
    pub meter: Option<RequestMeter>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.principal.key() {
            None => f.write_str("Caller(static key)"),
            Some(k) => write!(f, "Caller({} of tenant {})", k.key.prefix, k.tenant.name),
        }
    }
}

/// Names the deployment the request would run on — for an alias or `auto` (its classifier or an
/// `x-ferrogate-tier` pin), not the name asked for — and what the key may use instead.
fn not_allowed(deployment: &str, requested: &str, allowed: &[String]) -> String {
    let which = if deployment == requested {
        format!("This API key may not use the model '{deployment}'")
    } else {
        format!("This API key may not use the model '{deployment}' (what '{requested}' resolved to for this request)")
    };
    format!("{which}; it may use: {}", allowed.join(", "))
}

impl Caller {
    /// 403 unless the key may use this deployment (by its name or the name requested).
    pub fn check_model(&self, deployment: &Deployment, requested: &str) -> Result<(), ApiError> {
        let Some(k) = self.principal.key() else { return Ok(()) };
        let scopes = &k.key.scopes;
        if scopes.allows_model(&deployment.name) || scopes.allows_model(requested) {
            Ok(())
        } else {
            Err(ApiError::permission_denied(
                crate::error::ErrorCode::ModelNotAllowed,
                Some("model"),
                not_allowed(&deployment.name, requested, &scopes.models),
            ))
        }
    }

    /// Applies `max_tokens_per_request` (the key's and tenant's, the tighter): a larger request
    /// is refused with 400 naming `max_tokens`; a request without one gets the cap. Keys with a
    /// token budget or token rate get `default_max` when there is neither, so every reservation
    /// is bounded.
    pub fn cap_max_tokens(&self, requested: Option<u32>, default_max: u32) -> Result<Option<u32>, ApiError> {
        let Some(k) = self.principal.key() else { return Ok(requested) };
        let limits = k.key.limits.tightest(&k.tenant.limits);
        match (requested, limits.max_tokens_per_request) {
            (Some(r), Some(cap)) if r > cap => Err(ApiError::invalid(
                Some("max_tokens".into()),
                format!("max_tokens is {r}, above this API key's limit of {cap} tokens per request"),
            )),
            (Some(r), _) => Ok(Some(r)),
            (None, Some(cap)) => Ok(Some(cap)),
            (None, None) if k.key.limits.counts_tokens() || k.tenant.limits.counts_tokens() => Ok(Some(default_max)),
            (None, None) => Ok(None),
        }
    }

    pub fn meter_model(&self, model: &str) {
        if let Some(m) = &self.meter {
            let _ = m.model.set(model.to_owned());
        }
    }
}

/// One request's ledger slot. Whoever [`take`](RequestMeter::take)s it writes the row: the
/// `Settle` of a request that reached a backend, else the access layer's record.
pub struct RequestMeter {
    /// The ledger's endpoint name (`chat.completions`, `completions`, `generate`, `stream`).
    pub endpoint: &'static str,
    /// Clock time at arrival: the row's `created_at_ms` and the budget windows it counts in.
    pub started_ms: i64,
    pub started: Instant,
    taken: AtomicBool,
    model: OnceLock<String>,
}

impl RequestMeter {
    pub fn new(endpoint: &'static str, started_ms: i64) -> Self {
        Self { endpoint, started_ms, started: Instant::now(), taken: AtomicBool::new(false), model: OnceLock::new() }
    }

    /// `true` for the first caller only: that one writes the row.
    pub fn take(&self) -> bool {
        !self.taken.swap(true, Ordering::AcqRel)
    }

    pub fn model(&self) -> &str {
        self.model.get().map_or("", String::as_str)
    }
}
