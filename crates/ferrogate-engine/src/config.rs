//! Engine settings as written in config (`EngineConfig`) and as resolved for this machine
//! (`Resolved`): threads from the CPU count, a model path found in the model directory.
//!
//! `parallel` left unset is sized once the model is known (`default_parallel`): as many
//! sequences as a quarter of free memory holds in KV cache, at most 4 per thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// When the model loads: `hot` at start (the default), `on_demand` by the first request that
    /// needs it (`pool`). A request for a model not loaded waits for the load.
    pub load: LoadMode,
    /// Idle time after which the model is unloaded (Ollama's `keep_alive`: `"5m"`, `"30s"`,
    /// `"500ms"`, seconds as a number; `-1` never, `0` as soon as it is idle). Default: 5 minutes
    /// for an `on_demand` model, never for a `hot` one.
    pub keep_alive: Option<KeepAlive>,
    /// How long a request waits for the model to load — and for room in `[engine]`'s budget —
    /// before it is refused (503 `model_not_ready`).
    pub load_timeout_ms: u64,
}

/// When a model loads (`[backends.<name>] load`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// Loaded at start.
    #[default]
    Hot,
    /// Loaded by the first request that needs it.
    OnDemand,
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
            load: LoadMode::Hot,
            keep_alive: None,
            load_timeout_ms: 120_000,
        }
    }
}

impl EngineConfig {
    /// A config for `model_path` with every other setting at its default.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self { model_path: model_path.into(), ..Self::default() }
    }

    /// How long the model stays loaded while idle; `None`: until the process ends.
    pub fn idle_limit(&self) -> Option<Duration> {
        match (self.keep_alive, self.load) {
            (Some(k), _) => k.0,
            (None, LoadMode::Hot) => None,
            (None, LoadMode::OnDemand) => Some(DEFAULT_KEEP_ALIVE),
        }
    }
}

/// Ollama's default: an idle model stays loaded five minutes.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(300);

/// An idle time limit as Ollama writes it: `"5m"`, `"1h30m"`, `"30s"`, `"250ms"`, a number of
/// seconds, or a negative value for "never unload". `None` inside: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive(pub Option<Duration>);

impl KeepAlive {
    /// Parses Ollama's forms; a negative number (`-1`, `"-1m"`) means never.
    pub fn parse(text: &str) -> Result<KeepAlive, String> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix('-') {
            return parse_duration(rest).map(|_| KeepAlive(None));
        }
        parse_duration(t).map(|d| KeepAlive(Some(d)))
    }
}

/// `"90"` (seconds), `"1.5s"`, `"5m"`, `"1h30m"`, `"250ms"`.
fn parse_duration(t: &str) -> Result<Duration, String> {
    let bad = || format!("'{t}' is not a duration like \"5m\", \"30s\", \"500ms\" or a number of seconds");
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let scale = match &rest[digits..digits + unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        rest = &rest[digits + unit_len..];
    }
    if t.is_empty() { Err(bad()) } else { Ok(total) }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) if n < 0.0 => Ok(KeepAlive(None)),
            Raw::Number(n) => {
                Duration::try_from_secs_f64(n).map(|d| KeepAlive(Some(d))).map_err(serde::de::Error::custom)
            }
            Raw::Text(t) => KeepAlive::parse(&t).map_err(serde::de::Error::custom),
        }
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
    fn keep_alive_reads_ollamas_forms() {
        let secs = |s: u64| Ok(KeepAlive(Some(Duration::from_secs(s))));
        assert_eq!(KeepAlive::parse("5m"), secs(300));
        assert_eq!(KeepAlive::parse("1h30m"), secs(5400));
        assert_eq!(KeepAlive::parse("90"), secs(90));
        assert_eq!(KeepAlive::parse("0"), secs(0));
        assert_eq!(KeepAlive::parse("250ms"), Ok(KeepAlive(Some(Duration::from_millis(250)))));
        assert_eq!(KeepAlive::parse("-1"), Ok(KeepAlive(None)));
        assert_eq!(KeepAlive::parse("-1m"), Ok(KeepAlive(None)));
        for bad in ["", "5x", "m", "five", "5m3"] {
            assert!(KeepAlive::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idle_limit_defaults_by_load_mode() {
        let hot = EngineConfig::new("/m.gguf");
        assert_eq!(hot.idle_limit(), None);
        let cold = EngineConfig { load: LoadMode::OnDemand, ..hot.clone() };
        assert_eq!(cold.idle_limit(), Some(DEFAULT_KEEP_ALIVE));
        let short = EngineConfig { keep_alive: Some(KeepAlive(Some(Duration::from_secs(1)))), ..hot };
        assert_eq!(short.idle_limit(), Some(Duration::from_secs(1)));
    }

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
