//! ferrogate-testkit

pub mod ollama;
pub mod upstream;
