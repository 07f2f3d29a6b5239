//! Ollama's native API, both sides.
//!
//! - [`wire`]: the types ferrogate sends to an Ollama *backend* and reads back (re-exported here
//!   under their historical names, `ollama::ChatRequest` …, which the backends crate uses).
//! - [`front`]: the API ferrogate *serves* to Ollama clients (`/api/chat`, `/api/generate`,
//!   `/api/tags`, `/api/show`, `/api/ps`, `/api/version`, `/api/embed`) and its translation to
//!   and from the OpenAI pivot types.

pub mod front;
pub mod wire;

pub use wire::*;
