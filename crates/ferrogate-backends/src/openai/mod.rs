//! The OpenAI-compatible HTTP adapter: vLLM, TGI (`/v1`), llama.cpp server, SGLang, OpenAI.
//! `config` (what the operator writes), `convert` (pure request/response/chunk mapping),
//! `client` (the [`Backend`](ferrogate_core::Backend) impl).

mod client;
mod config;
pub(crate) mod convert;
mod embed;
mod passthrough;

pub use client::OpenAiBackend;
pub use config::OpenAiConfig;

/// `Backend::kind` of this adapter.
pub const KIND: &str = "openai";
