//! ferrogate-engine: the embedded llama.cpp engine — GGUF models, chat templates, sampling and
//! a continuous-batching scheduler on one dedicated thread, driven from async code through
//! channels (nothing here blocks the tokio runtime).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ferrogate_engine::{Engine, EngineConfig, GenEvent, GenerateRequest};
//! let engine = Engine::start(EngineConfig::new("SmolLM2-135M-Instruct.Q4_1.gguf"))?;
//! engine.wait_ready().await?;
//! let mut req = GenerateRequest::chat(vec![serde_json::json!({"role": "user", "content": "Hi"})]);
//! req.max_tokens = Some(32);
//! let mut generation = engine.submit(req)?;
//! while let Some(event) = generation.next().await {
//!     match event {
//!         GenEvent::Text(t) => print!("{t}"),
//!         GenEvent::Done(finish) => println!("\n{finish:?}"),
//!         GenEvent::Error(e) => return Err(e.into()),
//!         GenEvent::Started { .. } => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Module map: `embed` (sentence embeddings: its own thread and context), `engine` (the handle,
//! validation), `scheduler` (the thread and its step), `slots` (sequence slots, prefix choice),
//! `sampling`, `grammar` (constrained output: JSON, JSON Schema, tool calls), `template`, `stop`,
//! `utf8`, `model`
//! (loaded GGUF), `pool` (hot and cold models: load on demand, keep-alive, the load budget), `ffi` (process-wide llama.cpp glue), `config`, `stats`, `error`.

mod config;
mod embed;
mod engine;
mod error;
mod ffi;
mod generation;
pub mod grammar;
mod job;
mod llama_log;
mod logprobs;
mod model;
mod pool;
mod request;
mod sampling;
mod scheduler;
mod slots;
mod stats;
mod stop;
mod template;
mod utf8;

pub use config::{DEFAULT_KEEP_ALIVE, EngineConfig, KeepAlive, LoadMode, model_dir};
pub use embed::{EmbedConfig, EmbedError, EmbedInput, EmbedModelInfo, Embedder, Embeddings};
pub use engine::Engine;
pub use error::{EngineError, SubmitError};
pub use generation::Generation;
pub use grammar::OutputFormat;
pub use logprobs::MAX_TOP_LOGPROBS;
pub use pool::{AcquireError, ManagedEngine, ModelLease, ModelPool, ModelState, PoolConfig, Totals};
pub use request::{Finish, FinishReason, GenEvent, GenerateRequest, Prompt, SamplingParams, TokenLogprob};
pub use stats::{EngineStats, EngineStatus, ModelInfo};
pub use template::{FallbackTemplate, TemplateSource};
