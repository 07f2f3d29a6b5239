//! Engine settings as written in config (`EngineConfig`) and as resolved for this machine
//! (`Resolved`): threads from the CPU count, a model path found in the model directory.
//!
//! `parallel` left unset is sized once the model is known (`default_parallel`): as many
//! sequences as a quarter of free memory holds in KV cache, at most 4 per thread.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::EngineError;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// A GGUF file. Relative paths that do not exist from the working directory are looked up
    /// in `$FERROGATE_MODEL_DIR` (default `~/.cache/ferrogate/models`).
    pub model_path: PathBuf,
    /// Compute threads; default: the CPU count (`available_parallelism`).
    pub threads: Option<usize>,
    /// Context (prompt + completion) per sequence, in tokens.
    pub ctx_per_seq: u32,
    /// Sequences decoded together; default: what fits (see `default_parallel`).
    pub parallel: Option<usize>,
    /// Tokens per llama_decode call: the prefill chunk shared by all sequences.
    pub batch_size: u32,
    /// Requests that may wait behind the running ones before submit says QueueFull.
    pub queue_size: usize,
    /// Reuse the KV of a free slot whose tokens start the new prompt.
    pub prompt_cache: bool,
    /// A Jinja chat template that replaces the GGUF's `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Run one tiny decode after loading so the first request does not pay for lazy setup.
    pub warmup: bool,
    /// One KV cache shared by all sequences (llama-server's `--kv-unified`). Off: each sequence
    /// gets its own `ctx_per_seq` cells, laid out the same whatever else runs.
    pub kv_unified: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model_path: PathBuf::new(),
            threads: None,
            ctx_per_seq: 2048,
            parallel: None,
            batch_size: 512,
            queue_size: 64,
            prompt_cache: true,
            chat_template: None,
            warmup: true,
            kv_unified: false,
        }
    }
}

impl EngineConfig {
    /// A config for `model_path` with every other setting at its default.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self { model_path: model_path.into(), ..Self::default() }
    }
}

/// The settings the scheduler runs with; `parallel` is final only after the model loads.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub model_path: PathBuf,
    pub threads: usize,
    pub ctx_per_seq: u32,
    pub parallel: Option<usize>,
    pub batch_size: u32,
    pub queue_size: usize,
    pub prompt_cache: bool,
    pub chat_template: Option<String>,
    pub warmup: bool,
    pub kv_unified: bool,
}

/// Checks the config and fills in machine defaults; every problem is listed in one error.
pub(crate) fn resolve(cfg: EngineConfig) -> Result<Resolved, EngineError> {
    let mut problems = Vec::new();
    if cfg.model_path.as_os_str().is_empty() {
        problems.push("model_path is required".to_owned());
    }
    if cfg.threads == Some(0) {
        problems.push("threads must be at least 1".to_owned());
    }
    if cfg.parallel == Some(0) {
        problems.push("parallel must be at least 1".to_owned());
    }
    if cfg.ctx_per_seq < 16 {
        problems.push(format!("ctx_per_seq must be at least 16, got {}", cfg.ctx_per_seq));
    }
    if cfg.batch_size < 1 {
        problems.push("batch_size must be at least 1".to_owned());
    }
    if !problems.is_empty() {
        return Err(EngineError::Config(problems.join("; ")));
    }
    Ok(Resolved {
        model_path: find_model(&cfg.model_path),
        threads: cfg.threads.unwrap_or_else(machine_threads),
        ctx_per_seq: cfg.ctx_per_seq,
        parallel: cfg.parallel,
        batch_size: cfg.batch_size,
        queue_size: cfg.queue_size,
        prompt_cache: cfg.prompt_cache,
        chat_template: cfg.chat_template,
        warmup: cfg.warmup,
        kv_unified: cfg.kv_unified,
    })
}

fn machine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The directory holding downloaded models: `$FERROGATE_MODEL_DIR`, else
/// `~/.cache/ferrogate/models`.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROGATE_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/ferrogate/models")
}

pub(crate) fn find_model(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let in_dir = model_dir().join(path);
    if in_dir.exists() { in_dir } else { path.to_path_buf() }
}

/// How many sequences fit: KV budget (¼ of available memory, at most 4 GiB) over one
/// sequence's KV, clamped to 1..=4×threads (more would only add latency on a CPU).
pub(crate) fn default_parallel(threads: usize, ctx_per_seq: u32, kv_bytes_per_token: u64) -> usize {
    const GIB: u64 = 1 << 30;
    let budget = (available_memory().unwrap_or(4 * GIB) / 4).min(4 * GIB);
    let per_seq = u64::from(ctx_per_seq).saturating_mul(kv_bytes_per_token).max(1);
    let fits = usize::try_from(budget / per_seq).unwrap_or(usize::MAX);
    fits.clamp(1, 4 * threads.max(1))
}

/// `MemAvailable` from /proc/meminfo, in bytes (Linux only).
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_model() {
        let r = resolve(EngineConfig::new("/m.gguf"));
        assert!(r.is_ok_and(|r| r.threads >= 1 && r.ctx_per_seq == 2048));
    }

    #[test]
    fn every_problem_is_listed() {
        let cfg = EngineConfig { threads: Some(0), parallel: Some(0), ..EngineConfig::default() };
        let msg = resolve(cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("model_path") && msg.contains("threads") && msg.contains("parallel"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let parsed: Result<EngineConfig, _> = serde_json::from_str(r#"{"model_path":"a.gguf","therads":2}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn parallel_is_bounded_by_threads_and_memory() {
        assert_eq!(default_parallel(2, 2048, 1), 8);
        assert_eq!(default_parallel(2, 2048, u64::MAX / 4096), 1);
    }
}
