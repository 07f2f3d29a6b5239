//! Static keys (`server.api_keys`, the single-tenant case), kept as SHA-256 digests and compared
//! in constant time, and reading the key a request presents.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::tenancy::failures::FailureLimiter;

/// Failed static-key attempts allowed per minute and address when tenancy is off (with tenancy,
/// `tenancy.auth_failures_per_minute` counts them with the stored keys').
pub const STATIC_KEY_FAILURES_PER_MINUTE: u32 = 10;

pub struct StaticKeys {
    digests: Vec<[u8; 32]>,
    /// Wrong keys per address, when tenancy is off.
    pub(super) failures: FailureLimiter,
}

impl StaticKeys {
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k)).collect(),
            failures: FailureLimiter::new(STATIC_KEY_FAILURES_PER_MINUTE),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Constant time in the key's content; every stored digest is compared.
    pub fn accepts(&self, presented: &str) -> bool {
        let d = digest(presented);
        self.digests.iter().fold(false, |ok, k| ok | bool::from(k.ct_eq(&d)))
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        return v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}
