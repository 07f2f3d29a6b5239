//! Process-wide llama.cpp glue: the backend (initialised once per process, however many
//! engines run), llama.cpp's log lines routed into `tracing` (`llama_log`), the CPU features the
//! kernels use logged once at start, and a guard that turns a panic in the bindings into an
//! `EngineError` instead of a dead scheduler.
//!
//! The bindings' safe API covers the engine's work; the `unsafe` calls here read llama.cpp's static
//! system-info string and ggml's backend count (the log callback's is in `llama_log`). llama.cpp
//! aborts (GGML_ASSERT) cannot be caught and are avoided by construction (valid logits indices,
//! positions inside the context). In the portable build (feature `portable`) the CPU kernels are
//! shared libraries, one per x86-64 level, and ggml loads the best one this CPU runs before the
//! backend starts (`load_cpu_backends`).

use std::ffi::CStr;
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
            load_cpu_backends()?;
            let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            tracing::info!(
                cpu_features = %cpu_features(&system_info()),
                build = BUILD_KIND,
                "llama.cpp backend ready"
            );
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| EngineError::LoadFailed(format!("llama.cpp backend: {e}")))
}

/// How llama.cpp's CPU kernels were built: for this machine's CPU, or one library per x86-64
/// level chosen at run time.
const BUILD_KIND: &str = if cfg!(feature = "portable") { "portable" } else { "native" };

/// The portable build's CPU kernels (`libggml-cpu-*.so`): ggml scores each against this CPU and
/// keeps the best. They sit beside the binary unless `FERROGATE_GGML_BACKENDS_DIR` says where.
#[cfg(feature = "portable")]
fn load_cpu_backends() -> Result<(), String> {
    let dir = match std::env::var_os("FERROGATE_GGML_BACKENDS_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
            .ok_or("cannot locate the executable's directory for the CPU backends")?,
    };
    if dir.to_str().is_none() {
        return Err(format!("CPU backends directory {} is not UTF-8", dir.display()));
    }
    llama_cpp_2::llama_backend::load_backends_from_path(&dir);
    // SAFETY: ggml_backend_reg_count only reads ggml's backend registry, initialised on first use.
    if unsafe { llama_cpp_sys_2::ggml_backend_reg_count() } == 0 {
        return Err(format!("no CPU backend (libggml-cpu-*.so) in {} usable on this CPU", dir.display()));
    }
    Ok(())
}

#[cfg(not(feature = "portable"))]
fn load_cpu_backends() -> Result<(), String> {
    Ok(())
}

/// llama.cpp's system-info line: `CPU : SSE3 = 1 | AVX = 1 | … | AMX_INT8 = 0 | …`.
fn system_info() -> String {
    // SAFETY: llama_print_system_info returns a pointer to a static, NUL-terminated buffer that
    // stays valid until the next call; we copy it out at once. Its callers are the OnceLock
    // initialiser above (once per process) and one unit test (a process of its own under nextest),
    // so no two calls overlap.
    let raw = unsafe { llama_cpp_sys_2::llama_print_system_info() };
    if raw.is_null() {
        return String::new();
    }
    // SAFETY: non-null, NUL-terminated (see above).
    unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned()
}

/// The features switched on in a system-info line, space-separated: `SSE3 AVX AVX2 …`.
fn cpu_features(info: &str) -> String {
    let on: Vec<&str> = info
        .split('|')
        .filter_map(|item| {
            let (name, value) = item.split_once('=')?;
            let name = name.rsplit(':').next().unwrap_or(name).trim();
            (value.trim() == "1" && !name.is_empty()).then_some(name)
        })
        .collect();
    on.join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_features_lists_what_is_on() {
        let info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | AMX_INT8 = 0 | OPENMP = 1 | ";
        assert_eq!(cpu_features(info), "SSE3 AVX AVX2 OPENMP");
    }

    #[test]
    fn this_build_reports_its_features_and_no_amx() {
        let info = system_info();
        assert!(info.contains("CPU"), "system info: {info}");
        // The default build keeps AMX out (scripts/llama-cc); FERROGATE_LLAMA_AMX=1 opts in.
        if std::env::var("FERROGATE_LLAMA_AMX").as_deref() != Ok("1") {
            assert!(!cpu_features(&info).contains("AMX"), "system info: {info}");
        }
    }
}
