//! Tenants, key records, scopes and limits, and the inputs of the store's write operations.
//!
//! Invariants: an [`ApiKey`] never holds its secret; limits are all optional (`None` = no limit
//! of that kind), and a tenant's limits cap every key of the tenant (the limiter checks both).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{KeyId, TenantId};
use super::key::PlaintextKey;

/// A tenant (team): owns keys, and its limits cap all of them together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Stable identity.
    pub id: TenantId,
    /// Unique, human-chosen; see [`NewTenant::name`] for the allowed characters.
    pub name: String,
    /// Caps for the tenant as a whole.
    pub limits: Limits,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last change; instances poll for changes to invalidate their caches.
    pub updated_at_ms: i64,
}

/// An API key record. The secret is not here: stores hold only its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Stable identity, kept across rotations.
    pub id: KeyId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// Free text chosen by the operator ("ci", "alice's laptop").
    pub name: String,
    /// `fg-<8 chars>`, the visible part of the key: shown in lists and logs, kept across rotations.
    pub prefix: String,
    /// Which models and endpoint groups the key may use.
    pub scopes: Scopes,
    /// Per-key caps (inside the tenant's).
    pub limits: Limits,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last change (update, rotation, revocation).
    pub updated_at_ms: i64,
    /// Unix ms after which the key no longer authenticates; `None` = never expires.
    pub expires_at_ms: Option<i64>,
    /// Unix ms of revocation; a revoked key never authenticates again.
    pub revoked_at_ms: Option<i64>,
}

/// Whether a key may authenticate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked (takes precedence over expiry).
    Revoked,
    /// Past its expiry time.
    Expired,
}

impl ApiKey {
    /// The key's status at `now_ms`. Cached records must be re-checked on every use: expiry
    /// happens without any write to the store.
    pub fn status(&self, now_ms: i64) -> KeyStatus {
        if self.revoked_at_ms.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at_ms.is_some_and(|t| now_ms >= t) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// What a lookup by digest returns: the key and its tenant (the auth path needs both limits).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLookup {
    /// The key record; check [`ApiKey::status`] before trusting it.
    pub key: ApiKey,
    /// The owning tenant.
    pub tenant: Tenant,
}

/// The groups of endpoints a key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointGroup {
    /// Chat, completions, embeddings, models.
    Inference,
    /// Batch jobs and their files.
    Batch,
    /// Reading the key's own tenant's usage.
    UsageRead,
}

impl EndpointGroup {
    /// Every group, in order.
    pub const ALL: [EndpointGroup; 3] = [EndpointGroup::Inference, EndpointGroup::Batch, EndpointGroup::UsageRead];

    /// The name used in configuration, the CLI and the stored scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointGroup::Inference => "inference",
            EndpointGroup::Batch => "batch",
            EndpointGroup::UsageRead => "usage-read",
        }
    }
}

impl fmt::Display for EndpointGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndpointGroup {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown endpoint group '{s}' (inference, batch, usage-read)")))
    }
}

/// What a key may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scopes {
    /// Model (deployment) names the key may request; empty = every model.
    pub models: Vec<String>,
    /// Endpoint groups the key may call; exactly this set (empty = none). The default is
    /// inference and batch: what a client key usually needs, without reading usage.
    pub endpoints: BTreeSet<EndpointGroup>,
}

impl Default for Scopes {
    fn default() -> Self {
        Self { models: Vec::new(), endpoints: BTreeSet::from([EndpointGroup::Inference, EndpointGroup::Batch]) }
    }
}

impl Scopes {
    /// Whether `model` is allowed.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }

    /// Whether the endpoint group is allowed.
    pub fn allows(&self, group: EndpointGroup) -> bool {
        self.endpoints.contains(&group)
    }
}

/// Caps on a key or a tenant. Every field is optional: `None` = no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Requests started per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// Upper bound on one request's `max_tokens` (and the default when the request sets none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_request: Option<u32>,
    /// Token budget per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// Token budget per UTC calendar month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
    /// Cost budget in USD per UTC day, priced with the per-model prices from configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    /// Cost budget in USD per UTC calendar month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<f64>,
}

impl Limits {
    /// Field by field, the tighter of `self` and `other` (a limit on either side applies).
    /// Right for per-request caps; rate limits and budgets are checked against *both* owners'
    /// counters, since a tenant's quota is shared by all its keys.
    pub fn tightest(&self, other: &Limits) -> Limits {
        fn min<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(if b < a { b } else { a }),
                (a, b) => a.or(b),
            }
        }
        Limits {
            requests_per_minute: min(self.requests_per_minute, other.requests_per_minute),
            tokens_per_minute: min(self.tokens_per_minute, other.tokens_per_minute),
            max_concurrent_requests: min(self.max_concurrent_requests, other.max_concurrent_requests),
            max_tokens_per_request: min(self.max_tokens_per_request, other.max_tokens_per_request),
            tokens_per_day: min(self.tokens_per_day, other.tokens_per_day),
            tokens_per_month: min(self.tokens_per_month, other.tokens_per_month),
            usd_per_day: min(self.usd_per_day, other.usd_per_day),
            usd_per_month: min(self.usd_per_month, other.usd_per_month),
        }
    }

    /// Whether no limit of any kind is set.
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }

    /// Whether a day or month budget (tokens or cost) is set: those need the store's usage so far.
    pub fn has_budget(&self) -> bool {
        self.tokens_per_day.is_some()
            || self.tokens_per_month.is_some()
            || self.usd_per_day.is_some()
            || self.usd_per_month.is_some()
    }

    /// Whether a request should carry a bounded `max_tokens` (token budgets and token rates
    /// reserve it).
    pub fn counts_tokens(&self) -> bool {
        self.has_budget() || self.tokens_per_minute.is_some()
    }

    /// Refuses cost budgets that are negative, NaN or infinite.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        for (name, v) in [("usd_per_day", self.usd_per_day), ("usd_per_month", self.usd_per_month)] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(InvalidInput(format!("{name} must be a finite, non-negative amount, not {v}")));
            }
        }
        Ok(())
    }
}

/// A value a store refuses before touching the database; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Input of tenant creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewTenant {
    /// Unique; 1–64 characters of `A–Z a–z 0–9 . _ -`.
    pub name: String,
    /// Caps for the tenant as a whole.
    #[serde(default)]
    pub limits: Limits,
}

impl NewTenant {
    /// Checks the name's characters and the limits.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_tenant_name(&self.name)?;
        self.limits.validate()
    }
}

/// A change to a tenant; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantUpdate {
    /// New unique name.
    #[serde(default)]
    pub name: Option<String>,
    /// New limits (replacing all of them).
    #[serde(default)]
    pub limits: Option<Limits>,
}

impl TenantUpdate {
    /// Checks whatever is being changed.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(name) = &self.name {
            validate_tenant_name(name)?;
        }
        self.limits.as_ref().map_or(Ok(()), Limits::validate)
    }
}

fn validate_tenant_name(name: &str) -> Result<(), InvalidInput> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if (1..=64).contains(&name.len()) && ok_chars {
        Ok(())
    } else {
        Err(InvalidInput(format!("tenant name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ -")))
    }
}

fn validate_key_name(name: &str) -> Result<(), InvalidInput> {
    if (1..=128).contains(&name.chars().count()) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(InvalidInput(format!("key name {name:?} must be 1-128 characters without control characters")))
    }
}

/// Input of key creation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKeySpec {
    /// The owning tenant; must exist.
    pub tenant_id: TenantId,
    /// 1–128 characters, no control characters.
    pub name: String,
    /// What the key may use.
    pub scopes: Scopes,
    /// Per-key caps.
    pub limits: Limits,
    /// Unix ms after which the key stops working; `None` = never.
    pub expires_at_ms: Option<i64>,
}

impl NewKeySpec {
    /// A key with default scopes, no limits of its own and no expiry.
    pub fn new(tenant_id: TenantId, name: impl Into<String>) -> Self {
        Self { tenant_id, name: name.into(), scopes: Scopes::default(), limits: Limits::default(), expires_at_ms: None }
    }

    /// Checks the name and the limits.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        validate_key_name(&self.name)?;
        self.limits.validate()
    }
}

/// A change to a key; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyUpdate {
    /// New name.
    pub name: Option<String>,
    /// New scopes (replacing them).
    pub scopes: Option<Scopes>,
    /// New limits (replacing them).
    pub limits: Option<Limits>,
    /// New expiry: `Some(None)` removes it.
    pub expires_at_ms: Option<Option<i64>>,
}

impl KeyUpdate {
    /// Checks whatever is being changed.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(name) = &self.name {
            validate_key_name(name)?;
        }
        self.limits.as_ref().map_or(Ok(()), Limits::validate)
    }
}

/// A key just created or rotated: the plaintext, shown once, and the stored record.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Give it to the key's owner and drop it; it cannot be recovered.
    pub plaintext: PlaintextKey,
    /// What the store now holds.
    pub record: ApiKey,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(revoked: Option<i64>, expires: Option<i64>) -> ApiKey {
        ApiKey {
            id: KeyId::from("k"),
            tenant_id: TenantId::from("t"),
            name: "n".into(),
            prefix: "fg-aaaaaaaa".into(),
            scopes: Scopes::default(),
            limits: Limits::default(),
            created_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: expires,
            revoked_at_ms: revoked,
        }
    }

    #[test]
    fn status_revoked_beats_expired_and_expiry_is_inclusive() {
        assert_eq!(key(None, None).status(i64::MAX), KeyStatus::Active);
        assert_eq!(key(None, Some(10)).status(9), KeyStatus::Active);
        assert_eq!(key(None, Some(10)).status(10), KeyStatus::Expired);
        assert_eq!(key(Some(5), Some(10)).status(11), KeyStatus::Revoked);
    }

    #[test]
    fn scopes_default_and_checks() {
        let s = Scopes::default();
        assert!(s.allows_model("anything"));
        assert!(s.allows(EndpointGroup::Inference) && s.allows(EndpointGroup::Batch));
        assert!(!s.allows(EndpointGroup::UsageRead));
        let s = Scopes { models: vec!["a".into()], endpoints: BTreeSet::new() };
        assert!(s.allows_model("a") && !s.allows_model("b"));
        assert!(!s.allows(EndpointGroup::Inference));
    }

    #[test]
    fn scopes_and_limits_serde_round_trip_and_tolerate_missing_fields() {
        let s: Scopes = serde_json::from_str(r#"{"endpoints":["usage-read"]}"#).unwrap();
        assert!(s.allows(EndpointGroup::UsageRead) && s.models.is_empty());
        assert_eq!(serde_json::from_str::<Scopes>("{}").unwrap(), Scopes::default());
        let l = Limits { tokens_per_day: Some(5), usd_per_month: Some(1.5), ..Limits::default() };
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"tokens_per_day":5,"usd_per_month":1.5}"#);
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), l);
        assert_eq!("usage-read".parse::<EndpointGroup>().unwrap(), EndpointGroup::UsageRead);
        assert!("admin".parse::<EndpointGroup>().is_err());
    }

    #[test]
    fn tightest_takes_the_lower_of_each_field() {
        let a = Limits { requests_per_minute: Some(10), tokens_per_day: Some(100), ..Limits::default() };
        let b = Limits { requests_per_minute: Some(20), usd_per_day: Some(2.0), ..Limits::default() };
        let t = a.tightest(&b);
        assert_eq!(t.requests_per_minute, Some(10));
        assert_eq!(t.tokens_per_day, Some(100));
        assert_eq!(t.usd_per_day, Some(2.0));
        assert_eq!(t.tokens_per_minute, None);
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(NewTenant { name: "team-a.prod_1".into(), limits: Limits::default() }.validate().is_ok());
        for bad in ["", "has space", "ümlaut", &"x".repeat(65)] {
            assert!(NewTenant { name: bad.into(), limits: Limits::default() }.validate().is_err(), "{bad}");
        }
        let neg = Limits { usd_per_month: Some(-1.0), ..Limits::default() };
        assert!(neg.validate().unwrap_err().0.contains("usd_per_month"));
        assert!(Limits { usd_per_day: Some(f64::NAN), ..Limits::default() }.validate().is_err());
        assert!(NewKeySpec::new(TenantId::from("t"), "ci\n").validate().is_err());
        assert!(NewKeySpec::new(TenantId::from("t"), "alice's laptop").validate().is_ok());
    }
}
