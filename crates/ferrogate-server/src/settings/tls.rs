//! `[server.tls]`: TLS on the gateway's own listener (docs/SECURITY.md, "TLS").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default interval of the certificate files' change check.
pub const DEFAULT_TLS_RELOAD_SECS: u64 = 5;

/// The listener's certificate (PEM chain and key), optionally the CA client certificates are
/// verified against (mTLS), and whether the admin API demands one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The private key of the leaf (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) client certificates are checked against. A client may still connect
    /// without one; one it presents must verify, or the handshake fails.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `/admin/v1` (and `/metrics` unless `metrics.public`) answer only connections with a
    /// verified client certificate (needs `client_ca_file`), in addition to the master key.
    #[serde(default)]
    pub admin_requires_client_cert: bool,
    /// How often the files' modification times are checked; a changed pair is loaded without a
    /// restart (a bad one is logged and the old one kept).
    #[serde(default = "default_reload")]
    pub reload_interval_secs: u64,
}

fn default_reload() -> u64 {
    DEFAULT_TLS_RELOAD_SECS
}
