//! Engine tests with the real models (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M) from
//! FERROGATE_MODEL_DIR. Each test starts its own small engine; max_tokens stay small so the
//! whole suite runs in a few minutes on 2 cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod batching;
mod cache;
mod common;
mod grammar;
mod lifecycle;
mod sampling;
