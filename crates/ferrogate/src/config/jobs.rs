//! `[webhooks]` and `[batches]`: background work's settings (docs/JOBS.md). Read only by the
//! composition root; background work runs when tenancy is on (its tables live in that database).

use serde::Deserialize;

use ferrogate_server::tenancy::config::Secret;

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The key sealing endpoint secrets in the database: base64 of 32 bytes. Unset: a key file
    /// generated once in the data directory (mode 0600) — several replicas on PostgreSQL must
    /// share one key, so set it there.
    pub secret_key: Option<Secret>,
    /// Deliver to loopback, private and link-local addresses (off: the SSRF guard refuses them).
    pub allow_private_destinations: bool,
}

/// `[batches]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchesConfig {
    /// Largest uploaded file, bytes (an upload's body bound: this plus the multipart framing).
    pub max_file_bytes: u64,
    /// Bytes of files one tenant may hold.
    pub tenant_quota_bytes: u64,
    /// Most lines in one batch's input.
    pub max_lines: usize,
    /// Batch lines run at once on this instance.
    pub concurrency: usize,
    /// Attempts per line before it is dead-lettered (an error line `server_error`).
    pub max_attempts: u32,
    /// Seconds between batch-driver ticks (counts, finishing, expiry).
    pub tick_interval_secs: u64,
    /// A job lease's length, seconds: a line whose worker died runs again this long after.
    pub lease_secs: u64,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 * 1024 * 1024,
            tenant_quota_bytes: 1024 * 1024 * 1024,
            max_lines: 50_000,
            concurrency: 4,
            max_attempts: 5,
            tick_interval_secs: 2,
            lease_secs: 60,
        }
    }
}

/// Problems, one per line.
pub fn check(w: &WebhooksConfig, b: &BatchesConfig, errs: &mut Vec<String>) {
    if let Some(k) = &w.secret_key
        && ferrogate_store::SealingKey::from_base64(k.expose()).is_err()
    {
        errs.push("webhooks.secret_key: expected base64 of 32 bytes".into());
    }
    if b.concurrency == 0 {
        errs.push("batches.concurrency: must be at least 1".into());
    }
    if b.max_attempts == 0 {
        errs.push("batches.max_attempts: must be at least 1".into());
    }
    if b.lease_secs < 3 {
        errs.push("batches.lease_secs: must be at least 3 (heartbeats renew it every third)".into());
    }
    if b.tick_interval_secs == 0 {
        errs.push("batches.tick_interval_secs: must be at least 1".into());
    }
    if b.max_lines == 0 || b.max_file_bytes == 0 {
        errs.push("batches.max_lines and batches.max_file_bytes: must be at least 1".into());
    }
}
