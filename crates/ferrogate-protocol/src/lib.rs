//! Wire types of the APIs ferrogate speaks (OpenAI, Anthropic Messages, Ollama), SSE and NDJSON
//! framing, the error shapes, and the translations between the front protocols and the OpenAI
//! chat pivot the pipeline runs on.
//!
//! Invariant: serde only, no I/O — everything here is a pure function of bytes, so it can be
//! property-tested and fuzzed. Types are tolerant when reading upstream output (unknown fields
//! ignored, most fields optional) and exact when writing to clients.

pub mod anthropic;
pub mod error;
pub mod lines;
pub mod ollama;
pub mod openai;
pub mod sse;

pub use error::{ErrorBody, ErrorObject};
