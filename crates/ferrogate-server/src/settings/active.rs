//! [`ActiveConfig`]: what `/admin/v1/config` shows of the configuration in force — its version,
//! when and from where it was loaded, and the changes a reload could not apply (they need a
//! restart). It names files and settings, never a secret.

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActiveConfig {
    /// `sha256:<hex>` of the configuration file's text (of the checked settings when there is none).
    pub version: String,
    /// Unix seconds when this configuration took effect.
    pub loaded_at: u64,
    /// The configuration file; `None` when the gateway runs on defaults and the environment.
    pub source: Option<String>,
    /// `start` or `reload`.
    pub origin: &'static str,
    /// Settings the file changed since start that only a restart applies (listen address, TLS
    /// files, database and Redis URLs, …), as `section.key` paths; the values in force are the
    /// start's.
    pub restart_required: Vec<String>,
}
