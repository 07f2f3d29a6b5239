//! The native Ollama adapter: `/api/chat`, `/api/generate` (raw prompts), `/api/tags`,
//! `/api/ps`. `config` (what the operator writes), `convert` (pure request/response/line
//! mapping), `client` (the [`Backend`](ferrogate_core::Backend) impl).

mod client;
mod config;
pub(crate) mod convert;
mod embed;

pub use client::OllamaBackend;
pub use config::OllamaConfig;

/// `Backend::kind` of this adapter.
pub const KIND: &str = "ollama";
