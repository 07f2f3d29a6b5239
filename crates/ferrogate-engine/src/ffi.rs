//! Process-wide llama.cpp glue: the backend (initialised once per process, however many
//! engines run), llama.cpp's log lines routed into `tracing` (`llama_log`), and a guard that
//! turns a panic in the bindings into an `EngineError` instead of a dead scheduler.
//!
//! The bindings' safe API covers everything else the engine needs (the log callback is the one
//! `unsafe` block, in `llama_log`); llama.cpp aborts (GGML_ASSERT) cannot be caught and are avoided by
//! construction (valid logits indices, positions inside the context).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use crate::error::EngineError;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The llama.cpp backend, initialised on first use with logs going to `tracing`
/// (target `llama.cpp`, see `llama_log`).
pub(crate) fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            crate::llama_log::install();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::LoadFailed(format!("llama.cpp backend: {e}")))
}

/// Runs `f`, turning a panic (e.g. an `expect` inside the bindings) into an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::error!(what, %msg, "panic inside the engine, recovered");
        EngineError::Inference(format!("{what}: internal error"))
    })
}
