//! Static Bearer keys for the single-tenant case (`server.api_keys`). Keys are kept only as
//! SHA-256 digests and compared in constant time, so neither memory dumps nor timing reveal them.
//! Full tenancy (stored keys, scopes) is a separate layer.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Paths reachable without a key: probes only.
const PUBLIC_PATHS: &[&str] = &["/health", "/ready"];

pub struct StaticKeys {
    digests: Vec<[u8; 32]>,
}

impl StaticKeys {
    pub fn new(keys: &[String]) -> Self {
        Self { digests: keys.iter().map(|k| digest(k)).collect() }
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

pub async fn layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !st.keys.enabled() || PUBLIC_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match presented_key(req.headers()) {
        None => ApiError::unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
        )
        .into_response(),
        Some(k) if st.keys.accepts(k) => next.run(req).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = StaticKeys::new(&["sk-test-1234".into(), "sk-other-5678".into()]);
        assert!(keys.accepts("sk-test-1234"));
        assert!(keys.accepts("sk-other-5678"));
        assert!(!keys.accepts("sk-test-123"));
        assert!(!keys.accepts(""));
    }

    #[test]
    fn reads_bearer_and_x_api_key() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_key(&h), Some("k2"));
    }
}
