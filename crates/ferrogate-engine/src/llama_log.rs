//! llama.cpp's and ggml's log lines into `tracing` (target `llama.cpp`), as whole lines: a
//! continuation (`GGML_LOG_LEVEL_CONT`, e.g. the loader's progress dots) is appended to the line
//! it continues, never reported on its own. llama.cpp's INFO lines are the loader's chatter
//! (every metadata key, tensor layout, buffer sizes: ~290 lines per model), so they go out at
//! DEBUG; warnings and errors keep their level. The engine logs its own one-line summary.

use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;

use llama_cpp_sys_2 as sys;

/// One log source (llama.cpp or ggml): the line still being assembled.
struct Source {
    name: &'static str,
    joiner: Mutex<Joiner>,
}

static LLAMA: Source = Source { name: "llama", joiner: Mutex::new(Joiner::new()) };
static GGML: Source = Source { name: "ggml", joiner: Mutex::new(Joiner::new()) };

/// Points llama.cpp's and ggml's log callbacks here. Call once, before the backend starts.
pub(crate) fn install() {
    // SAFETY: `forward` is a plain `extern "C"` fn with the callback's signature; the user data
    // points to a `static Source`, valid for the whole process and only read through `&Source`.
    unsafe {
        sys::llama_log_set(Some(forward), std::ptr::from_ref(&LLAMA).cast_mut().cast::<c_void>());
        sys::ggml_log_set(Some(forward), std::ptr::from_ref(&GGML).cast_mut().cast::<c_void>());
    }
}

extern "C" fn forward(level: sys::ggml_log_level, text: *const c_char, data: *mut c_void) {
    if text.is_null() || data.is_null() {
        return;
    }
    // SAFETY: `data` is the `&'static Source` given in `install`; `text` is a NUL-terminated
    // string that llama.cpp keeps alive for the duration of the call.
    let (source, text) = unsafe { (&*data.cast::<Source>(), CStr::from_ptr(text)) };
    let text = text.to_string_lossy();
    let lines = source.joiner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(level, &text);
    for (level, line) in lines {
        emit(source.name, level, &line);
    }
}

fn emit(source: &str, level: sys::ggml_log_level, line: &str) {
    match level {
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", source, "{line}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama.cpp", source, "{line}"),
        _ => tracing::debug!(target: "llama.cpp", source, "{line}"),
    }
}

// === impl Joiner ===

/// Assembles llama.cpp's fragments into lines. Pure, so the CONT rules are tested without FFI.
#[derive(Debug)]
struct Joiner {
    /// Level of the line being assembled (or of the last line, for a CONT after a full line).
    level: sys::ggml_log_level,
    /// Text not yet ended by a newline.
    partial: String,
}

impl Joiner {
    const fn new() -> Self {
        Self { level: sys::GGML_LOG_LEVEL_INFO, partial: String::new() }
    }

    /// Takes one callback's text; returns the lines it completed, with their level. A new
    /// (non-CONT) message first completes whatever was pending.
    fn push(&mut self, level: sys::ggml_log_level, text: &str) -> Vec<(sys::ggml_log_level, String)> {
        let mut done = Vec::new();
        if level != sys::GGML_LOG_LEVEL_CONT {
            self.flush_into(&mut done);
            self.level = level;
        }
        self.partial.push_str(text);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            Self::keep(&mut done, self.level, line.trim_end());
        }
        done
    }

    fn flush_into(&mut self, done: &mut Vec<(sys::ggml_log_level, String)>) {
        let line = std::mem::take(&mut self.partial);
        Self::keep(done, self.level, line.trim_end());
    }

    /// Blank lines and bare progress dots carry nothing.
    fn keep(done: &mut Vec<(sys::ggml_log_level, String)>, level: sys::ggml_log_level, line: &str) {
        if !line.trim_matches('.').trim().is_empty() {
            done.push((level, line.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: sys::ggml_log_level = sys::GGML_LOG_LEVEL_INFO;
    const WARN: sys::ggml_log_level = sys::GGML_LOG_LEVEL_WARN;
    const CONT: sys::ggml_log_level = sys::GGML_LOG_LEVEL_CONT;

    #[test]
    fn continuations_join_the_line_they_continue() {
        let mut j = Joiner::new();
        assert!(j.push(INFO, "load_tensors: loading").is_empty());
        assert!(j.push(CONT, " done").is_empty());
        assert_eq!(j.push(CONT, "\n"), vec![(INFO, "load_tensors: loading done".to_owned())]);
    }

    #[test]
    fn a_continuation_after_a_full_line_keeps_its_level_and_dots_vanish() {
        let mut j = Joiner::new();
        assert_eq!(j.push(WARN, "careful\n"), vec![(WARN, "careful".to_owned())]);
        assert!(j.push(CONT, ".").is_empty());
        assert!(j.push(CONT, ".\n").is_empty());
        assert_eq!(j.push(CONT, "more\n"), vec![(WARN, "more".to_owned())]);
    }

    #[test]
    fn a_new_message_completes_an_unterminated_one() {
        let mut j = Joiner::new();
        assert!(j.push(WARN, "no newline").is_empty());
        let lines = j.push(INFO, "next\n");
        assert_eq!(lines, vec![(WARN, "no newline".to_owned()), (INFO, "next".to_owned())]);
    }
}
