//! The composition of background work (docs/JOBS.md): the durable queue, Files + Batches and the
//! webhook registry on the tenancy database, with the key that seals webhook secrets —
//! `[webhooks] secret_key`, else a key file generated once in the data directory (0600).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::jobs::{FileLimits, InputLimits};
use ferrogate_jobs::batch::BatchConfig;
use ferrogate_jobs::webhook::DeliveryConfig;
use ferrogate_server::jobs::JobServices;
use ferrogate_server::tenancy::config::{TenancySettings, default_data_dir};
use ferrogate_store::{SealingKey, Store};

use crate::config::Config;

/// The file holding the generated sealing key.
pub const KEY_FILE: &str = "webhook-sealing.key";

/// Background work's services over the opened tenancy store.
pub fn services(cfg: &Config, t: &TenancySettings, store: &Arc<Store>) -> Result<JobServices, String> {
    let key = match &cfg.webhooks.secret_key {
        Some(k) => SealingKey::from_base64(k.expose()).map_err(|e| format!("webhooks.secret_key: {e}"))?,
        None => key_file(&key_dir(t))?,
    };
    let b = &cfg.batches;
    let batch = BatchConfig {
        input_limits: InputLimits {
            max_lines: b.max_lines,
            max_bytes: usize::try_from(b.max_file_bytes).unwrap_or(usize::MAX),
        },
        item_max_attempts: b.max_attempts,
        ..BatchConfig::default()
    };
    Ok(JobServices {
        queue: Arc::new(store.job_queue()),
        files: Arc::clone(store) as _,
        batches: Arc::clone(store) as _,
        webhooks: Arc::new(store.webhooks(key)),
        file_limits: FileLimits { max_file_bytes: b.max_file_bytes, tenant_quota_bytes: b.tenant_quota_bytes },
        batch,
        delivery: DeliveryConfig {
            allow_private_destinations: cfg.webhooks.allow_private_destinations,
            ..DeliveryConfig::default()
        },
        instance: instance_name(),
        batch_concurrency: b.concurrency,
        tick_every: Duration::from_secs(b.tick_interval_secs),
        lease: Duration::from_secs(b.lease_secs),
    })
}

/// Next to a SQLite database; the data directory otherwise.
fn key_dir(t: &TenancySettings) -> PathBuf {
    let url = t.database_url.expose();
    url.strip_prefix("sqlite://")
        .map(|p| Path::new(p.split('?').next().unwrap_or(p)))
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(default_data_dir, Path::to_path_buf)
}

/// Reads the key file in `dir`, creating it (0600, never overwritten) on first use.
fn key_file(dir: &Path) -> Result<SealingKey, String> {
    let path = dir.join(KEY_FILE);
    let shown = path.display();
    match std::fs::read_to_string(&path) {
        Ok(text) => return SealingKey::from_base64(&text).map_err(|e| format!("{shown}: {e}")),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{shown}: {e}")),
        Err(_) => {}
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (key, text) = SealingKey::generate().map_err(|e| format!("webhook sealing key: {e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| format!("{shown}: {e}"))?;
            tracing::info!(path = %shown, "generated the key that seals webhook secrets");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
            SealingKey::from_base64(&text).map_err(|e| format!("{shown}: {e}"))
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// This instance's name in attempt records: the host name and process id.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "ferrogate".into());
    format!("{host}:{}", std::process::id())
}
