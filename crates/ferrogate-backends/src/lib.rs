//! `Backend` implementations: OpenAI-compatible HTTP (vLLM, TGI, llama.cpp server, SGLang,
//! OpenAI), native Ollama, and the embedded llama.cpp engine; plus their configuration.
//!
//! Invariant: a backend is built only from a config whose [`BackendConfig::validate`] found no
//! problem; every adapter maps its upstream's failures onto [`BackendError`] with blame and
//! retryability (see `http`), and dropping a future or stream it returned closes the upstream
//! connection (cancellation).
//!
//! Module map: `http` (pooled client, error mapping), `stream` (body → event stream, timeouts),
//! `load` (engines' own load for engine-aware routing: `/metrics`, `/api/ps`, embedded stats),
//! `discover` (`discover = "dns"`: one backend per address of the `base_url` host),
//! `validate` (config checks shared by the adapters), `openai/`, `ollama/` — each adapter folder
//! holds `config.rs`, `convert.rs` (pure conversions), `client.rs` (the `Backend` impl).

use std::path::PathBuf;
use std::sync::Arc;

use ferrogate_core::Backend;
use serde::Deserialize;

mod defaults;
pub mod discover;
pub mod embedded;
mod http;
pub mod load;
pub mod ollama;
pub mod openai;
mod stream;
mod validate;

pub use discover::{DiscoverMode, DnsTarget};
pub use ferrogate_core::BackendError;
pub use ferrogate_engine::{EngineConfig, ModelPool, PoolConfig};
pub use ollama::{OllamaBackend, OllamaConfig};
pub use openai::{OpenAiBackend, OpenAiConfig};

/// One `[backends.<name>]` table of the config file; `kind` picks the adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendConfig {
    Openai(openai::OpenAiConfig),
    Ollama(ollama::OllamaConfig),
    Embedded(ferrogate_engine::EngineConfig),
    /// A sentence-embedding GGUF run in process (serves `/v1/embeddings` only).
    EmbeddedEmbeddings(ferrogate_engine::EmbedConfig),
}

/// What building a backend may need beyond its own config.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// Where model files are looked up (used by the embedded engine).
    pub model_dir: PathBuf,
    /// The process's embedded models and their load budget (`[engine]`): one pool for every
    /// build of a process, start and reloads alike.
    pub engines: ferrogate_engine::ModelPool,
}

impl BackendConfig {
    /// Every problem of this config, as human-readable lines naming the backend; empty if fine.
    pub fn validate(&self, name: &str) -> Vec<String> {
        let problems = match self {
            BackendConfig::Openai(c) => {
                [c.problems(), discover::problems(c.discover, c.discover_interval_ms, &c.base_url)].concat()
            }
            BackendConfig::Ollama(c) => {
                [c.problems(), discover::problems(c.discover, c.discover_interval_ms, &c.base_url)].concat()
            }
            BackendConfig::Embedded(c) => embedded_problems(c),
            BackendConfig::EmbeddedEmbeddings(c) => embedding_problems(c),
        };
        problems.into_iter().map(|p| format!("backends.{name}: {p}")).collect()
    }

    /// The adapter's name, as `Backend::kind` reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Openai(_) => openai::KIND,
            BackendConfig::Ollama(_) => ollama::KIND,
            BackendConfig::Embedded(_) => "embedded",
            BackendConfig::EmbeddedEmbeddings(_) => "embedded_embeddings",
        }
    }
}

fn embedded_problems(c: &ferrogate_engine::EngineConfig) -> Vec<String> {
    if c.model_path.as_os_str().is_empty() {
        return vec!["model_path is required".to_owned()];
    }
    match embedded::source::hub_file(&c.model_path) {
        Some(Err(e)) => vec![e],
        _ => Vec::new(),
    }
}

fn embedding_problems(c: &ferrogate_engine::EmbedConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if c.model_path.as_os_str().is_empty() {
        problems.push("model_path is required".to_owned());
    }
    if c.batch_tokens < 8 {
        problems.push(format!("batch_tokens must be at least 8 (got {})", c.batch_tokens));
    }
    if c.max_batch_inputs == 0 || c.queue_size == 0 {
        problems.push("max_batch_inputs and queue_size must be at least 1".to_owned());
    }
    problems
}

/// Builds the backend `name` from its config. Call [`BackendConfig::validate`] first: this
/// reports only the first problem it meets.
pub fn build(name: &str, cfg: BackendConfig, cx: &BuildContext) -> Result<Arc<dyn Backend>, String> {
    let backend: Arc<dyn Backend> = match cfg {
        BackendConfig::Openai(c) => Arc::new(OpenAiBackend::new(name, c)?),
        BackendConfig::Ollama(c) => Arc::new(OllamaBackend::new(name, c)?),
        BackendConfig::Embedded(c) => Arc::new(embedded::EmbeddedBackend::start(name, c, &cx.engines)?),
        BackendConfig::EmbeddedEmbeddings(c) => Arc::new(embedded::embeddings::EmbeddingBackend::start(name, c)?),
    };
    Ok(backend)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parse(v: serde_json::Value) -> Result<BackendConfig, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn tagged_by_kind_with_defaults() {
        let c = parse(serde_json::json!({"kind": "openai", "base_url": "http://127.0.0.1:8000/v1"})).unwrap();
        let BackendConfig::Openai(o) = c else { panic!("not openai") };
        assert_eq!(o.connect_timeout_ms, 2000);
        assert_eq!(o.first_token_timeout_ms, 120_000);
        let c = parse(serde_json::json!({"kind": "ollama"})).unwrap();
        assert_eq!(c.kind(), "ollama");
        assert!(c.validate("o").is_empty());
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let e = parse(serde_json::json!({"kind": "openai", "base_url": "http://x/v1", "base_ulr": "y"})).unwrap_err();
        assert!(e.contains("base_ulr"), "{e}");
        assert!(parse(serde_json::json!({"kind": "nope"})).is_err());
    }

    #[test]
    fn validate_lists_every_problem_with_the_backend_name() {
        let c = parse(serde_json::json!({
            "kind": "openai", "base_url": "ftp:/x", "connect_timeout_ms": 0, "total_timeout_ms": 0
        }))
        .unwrap();
        let problems = c.validate("up");
        assert!(problems.len() >= 3, "{problems:?}");
        assert!(problems.iter().all(|p| p.starts_with("backends.up: ")));
    }

    #[test]
    fn embedding_backend_config() {
        let c = parse(serde_json::json!({"kind": "embedded_embeddings", "model_path": "m.gguf"})).unwrap();
        assert_eq!((c.kind(), c.validate("e").len()), ("embedded_embeddings", 0));
        let c = parse(serde_json::json!({"kind": "embedded_embeddings", "batch_tokens": 1})).unwrap();
        assert_eq!(c.validate("e").len(), 2);
        assert!(parse(serde_json::json!({"kind": "embedded_embeddings", "parallel": 2})).is_err());
    }

    #[test]
    fn embedded_needs_a_model_path() {
        let c = parse(serde_json::json!({"kind": "embedded", "model_path": "m.gguf"})).unwrap();
        assert_eq!((c.kind(), c.validate("e").len()), ("embedded", 0));
        let c = parse(serde_json::json!({"kind": "embedded"})).unwrap();
        assert_eq!(c.validate("e"), vec!["backends.e: model_path is required"]);
        let c = parse(serde_json::json!({"kind": "embedded", "model_path": "hf://org/repo/m.gguf"})).unwrap();
        assert!(c.validate("e").is_empty());
        let c = parse(serde_json::json!({"kind": "embedded", "model_path": "hf://org/m.gguf"})).unwrap();
        assert!(c.validate("e")[0].contains("hf://owner/repo/file.gguf"));
    }
}
