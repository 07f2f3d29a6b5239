//! The `[tenancy]` and `[prices.<model>]` configuration: raw serde structs and their check into
//! [`TenancySettings`].
//!
//! Tenancy (stored keys, admin API, usage ledger, budgets) is on when a master key or a database
//! URL is configured; off, the gateway behaves as before (static `server.api_keys` or no auth).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrogate_core::limits::FailurePolicy;
use ferrogate_core::tenancy::quota::Price;
use serde::{Deserialize, Serialize};

/// The environment variable holding the master key (wins over `tenancy.master_key`).
pub const MASTER_KEY_ENV: &str = "FERROGATE_MASTER_KEY";
/// The database file's name inside the data directory.
pub const DEFAULT_DB_FILE: &str = "ferrogate.db";
/// The shortest master key accepted.
pub const MIN_MASTER_KEY_LEN: usize = 16;

/// A secret string: never printed (`Debug` redacts), compared through its digest.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Guards `/admin/v1`; `FERROGATE_MASTER_KEY` wins. Setting it turns tenancy on.
    pub master_key: Option<Secret>,
    /// Where the default SQLite database lives; default `~/.local/share/ferrogate`.
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; default `sqlite://<data_dir>/ferrogate.db`. Setting it
    /// without a master key runs an instance that serves stored keys but no admin API.
    pub database_url: Option<Secret>,
    /// How often key and tenant changes are polled (revocations reach every instance in about this).
    pub poll_interval_ms: u64,
    /// Failed authentication attempts per client IP and minute before 429.
    pub auth_failures_per_minute: u32,
    /// Longest a usage row waits before it is written.
    pub ledger_flush_interval_ms: u64,
    /// Where usage rows are spooled before they reach the database, so a crash loses none;
    /// default `<data_dir>/ledger-spool/<hash of database_url>`.
    pub ledger_spool_dir: Option<PathBuf>,
    /// `max_tokens` applied to requests of keys with a token budget or token rate that set none
    /// (and have no `max_tokens_per_request`), so a reservation bounds what a request may use.
    pub default_max_tokens: u32,
    /// With `[limits] redis_url` set, count day/month budgets and in-flight caps in that Redis, so
    /// every replica sees every reservation (docs/SCALING.md). `false`: per instance.
    pub shared_budgets: bool,
    /// While the shared budget store cannot answer: `fail_closed` (503) or `fail_open` (admit
    /// without a reservation; counted).
    pub budgets_on_store_error: FailurePolicy,
    /// How long a request counts in flight in the shared store if its replica dies before it
    /// settles; longer than the longest request.
    pub inflight_lease_secs: u64,
    /// How often shared budget counters are checked against the ledger (drift correction).
    pub budget_correct_interval_ms: u64,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            master_key: None,
            data_dir: None,
            database_url: None,
            poll_interval_ms: 1000,
            auth_failures_per_minute: 10,
            ledger_flush_interval_ms: 1000,
            ledger_spool_dir: None,
            default_max_tokens: 4096,
            shared_budgets: true,
            budgets_on_store_error: FailurePolicy::FailClosed,
            inflight_lease_secs: 900,
            budget_correct_interval_ms: 60_000,
        }
    }
}

/// `[prices.<deployment>]`: USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
}

/// Checked tenancy settings; present only when tenancy is on.
#[derive(Debug, Clone)]
pub struct TenancySettings {
    pub master_key: Option<Secret>,
    pub database_url: Secret,
    /// The usage ledger's crash spool (`ferrogate_core::tenancy::spool`).
    pub ledger_spool: PathBuf,
    pub poll_interval: Duration,
    pub auth_failures_per_minute: u32,
    pub ledger_flush_interval: Duration,
    pub default_max_tokens: u32,
    pub shared_budgets: bool,
    pub budgets_on_store_error: FailurePolicy,
    pub inflight_lease: Duration,
    pub budget_correct_interval: Duration,
    /// By deployment name.
    pub prices: BTreeMap<String, Price>,
}

/// `~/.local/share/ferrogate` (`$XDG_DATA_HOME/ferrogate` if set): data, not cache — the model
/// cache may be wiped, the key database must not.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ferrogate");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/ferrogate")
}

/// Next to a SQLite database (`<its dir>/ledger-spool`); for PostgreSQL
/// `<data_dir>/ledger-spool/<hash of the URL>`, so only a gateway of the same database replays it.
fn default_spool_dir(t: &TenancyConfig, database_url: &str) -> PathBuf {
    let sqlite_dir = database_url
        .strip_prefix("sqlite://")
        .map(|p| Path::new(p.split('?').next().unwrap_or(p)))
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = sqlite_dir {
        return dir.join("ledger-spool");
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(database_url.as_bytes());
    let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    t.data_dir.clone().unwrap_or_else(default_data_dir).join("ledger-spool").join(name)
}

/// Checks the section; `deployments` are the configured deployment names (prices must name one).
/// `None` when tenancy is off.
pub fn check(
    t: &TenancyConfig,
    prices: &BTreeMap<String, PriceConfig>,
    deployments: &[&str],
    errs: &mut Vec<String>,
) -> Option<TenancySettings> {
    if let Some(k) = &t.master_key
        && k.expose().len() < MIN_MASTER_KEY_LEN
    {
        errs.push(format!("tenancy.master_key must be at least {MIN_MASTER_KEY_LEN} characters"));
    }
    if let Some(url) = &t.database_url {
        let scheme = url.expose().split_once(':').map_or("", |(s, _)| s);
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            errs.push("tenancy.database_url must start with sqlite:// or postgres://".into());
        }
    }
    for (field, v) in [
        ("poll_interval_ms", t.poll_interval_ms),
        ("ledger_flush_interval_ms", t.ledger_flush_interval_ms),
        ("inflight_lease_secs", t.inflight_lease_secs),
        ("budget_correct_interval_ms", t.budget_correct_interval_ms),
    ] {
        if v == 0 {
            errs.push(format!("tenancy.{field} must be greater than 0"));
        }
    }
    if t.auth_failures_per_minute == 0 {
        errs.push("tenancy.auth_failures_per_minute must be greater than 0".into());
    }
    if t.default_max_tokens == 0 {
        errs.push("tenancy.default_max_tokens must be greater than 0".into());
    }
    let mut checked = BTreeMap::new();
    for (model, p) in prices {
        if !deployments.contains(&model.as_str()) {
            errs.push(format!("prices.{model}: no deployment named '{model}' (known: {})", deployments.join(", ")));
        }
        if !(p.input.is_finite() && p.input >= 0.0 && p.output.is_finite() && p.output >= 0.0) {
            errs.push(format!("prices.{model}: input and output must be finite, non-negative USD per 1M tokens"));
        }
        checked.insert(model.clone(), Price { input: p.input, output: p.output });
    }
    if t.master_key.is_none() && t.database_url.is_none() {
        return None;
    }
    let database_url = t.database_url.clone().unwrap_or_else(|| {
        let dir = t.data_dir.clone().unwrap_or_else(default_data_dir);
        Secret::new(format!("sqlite://{}", dir.join(DEFAULT_DB_FILE).display()))
    });
    let ledger_spool = t.ledger_spool_dir.clone().unwrap_or_else(|| default_spool_dir(t, database_url.expose()));
    Some(TenancySettings {
        master_key: t.master_key.clone(),
        database_url,
        ledger_spool,
        poll_interval: Duration::from_millis(t.poll_interval_ms),
        auth_failures_per_minute: t.auth_failures_per_minute,
        ledger_flush_interval: Duration::from_millis(t.ledger_flush_interval_ms),
        default_max_tokens: t.default_max_tokens,
        shared_budgets: t.shared_budgets,
        budgets_on_store_error: t.budgets_on_store_error,
        inflight_lease: Duration::from_secs(t.inflight_lease_secs),
        budget_correct_interval: Duration::from_millis(t.budget_correct_interval_ms),
        prices: checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_master_key_or_database() {
        let mut errs = Vec::new();
        assert!(check(&TenancyConfig::default(), &BTreeMap::new(), &[], &mut errs).is_none());
        assert!(errs.is_empty());
    }

    #[test]
    fn master_key_alone_uses_sqlite_in_the_data_dir() {
        let t = TenancyConfig {
            master_key: Some(Secret::new("0123456789abcdef")),
            data_dir: Some("/var/lib/fg".into()),
            ..TenancyConfig::default()
        };
        let mut errs = Vec::new();
        let s = check(&t, &BTreeMap::new(), &[], &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.map(|s| s.database_url.expose().to_owned()).as_deref(), Some("sqlite:///var/lib/fg/ferrogate.db"));
    }

    #[test]
    fn every_problem_is_listed_and_secrets_never_print() {
        let t = TenancyConfig {
            master_key: Some(Secret::new("short")),
            database_url: Some(Secret::new("mysql://root:hunter2@db/x")),
            poll_interval_ms: 0,
            ..TenancyConfig::default()
        };
        let prices = BTreeMap::from([("nope".to_owned(), PriceConfig { input: -1.0, output: 0.0 })]);
        let mut errs = Vec::new();
        let _ = check(&t, &prices, &["m"], &mut errs);
        let all = errs.join("\n");
        assert_eq!(errs.len(), 5, "{all}");
        assert!(!all.contains("hunter2") && !all.contains("short"), "{all}");
        assert!(!format!("{t:?}").contains("hunter2"));
    }
}
