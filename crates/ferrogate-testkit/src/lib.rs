//! Test support: a real gateway on `127.0.0.1:0` (`TestGateway`), the real model files,
//! fault-injecting upstreams (`upstream`, `ollama`) for the failures a real engine won't produce
//! on demand, a fresh database per test (`db`: SQLite or PostgreSQL), and Redis (`redis`: the shared
//! one with a unique key prefix per test, or a private server a test may kill or pause), a private
//! PostgreSQL a test may pause (`pg`), and signals to the processes a test started (`process`).
//! Dev-dependency only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support fails loudly

pub mod db;
pub mod gateway;
pub mod ollama;
pub mod pg;
pub mod process;
pub mod redis;
pub mod upstream;

pub use db::TestDatabase;
pub use gateway::{TestGateway, model_path};
