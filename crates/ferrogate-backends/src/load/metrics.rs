//! Engine load from Prometheus text exposition: the few gauges each engine names its queue and
//! KV cache by, summed over label sets (one vLLM process may run several engines).
//!
//! | engine | running | waiting | KV use (0..1) |
//! |---|---|---|---|
//! | vLLM | `vllm:num_requests_running` | `vllm:num_requests_waiting` | `vllm:kv_cache_usage_perc` (older: `vllm:gpu_cache_usage_perc`) |
//! | llama.cpp server (`--metrics`) | `llamacpp:requests_processing` | `llamacpp:requests_deferred` | `llamacpp:kv_cache_usage_ratio` (older builds only) |
//! | SGLang | `sglang:num_running_reqs` | `sglang:num_queue_reqs` | `sglang:token_usage` |
//! | TGI | `tgi_batch_current_size` | `tgi_queue_size` | — |
//!
//! The sample lines are read here rather than through `prometheus-parse` (0.2.5, the common
//! crate): its name pattern is `\w+`, which stops at the `:` every one of these engines puts in
//! its names, so it drops exactly the samples needed. Only sample lines are read (`# HELP`/
//! `# TYPE` skipped); label values may hold any character, quotes escaped.

use ferrogate_core::affinity::EngineLoad;

#[derive(Clone, Copy)]
enum Field {
    Running,
    Waiting,
    Kv,
}

const FAMILIES: &[(&str, Field)] = &[
    ("vllm:num_requests_running", Field::Running),
    ("vllm:num_requests_waiting", Field::Waiting),
    ("vllm:kv_cache_usage_perc", Field::Kv),
    ("vllm:gpu_cache_usage_perc", Field::Kv),
    ("llamacpp:requests_processing", Field::Running),
    ("llamacpp:requests_deferred", Field::Waiting),
    ("llamacpp:kv_cache_usage_ratio", Field::Kv),
    ("sglang:num_running_reqs", Field::Running),
    ("sglang:num_queue_reqs", Field::Waiting),
    ("sglang:token_usage", Field::Kv),
    ("tgi_batch_current_size", Field::Running),
    ("tgi_queue_size", Field::Waiting),
];

/// The load in a `/metrics` body; `Err` when it holds none of the known families.
pub fn parse(text: &str) -> Result<EngineLoad, String> {
    let (mut running, mut waiting, mut kv) = (None::<f64>, None::<f64>, None::<f64>);
    for (name, value) in text.lines().filter_map(sample) {
        let Some((_, field)) = FAMILIES.iter().find(|(n, _)| *n == name) else { continue };
        if !value.is_finite() {
            continue;
        }
        match field {
            Field::Running => running = Some(running.unwrap_or(0.0) + value),
            Field::Waiting => waiting = Some(waiting.unwrap_or(0.0) + value),
            Field::Kv => kv = Some(kv.unwrap_or(0.0).max(value)),
        }
    }
    if running.is_none() && waiting.is_none() && kv.is_none() {
        return Err("no engine load metrics (vllm:, llamacpp:, sglang:, tgi_) in /metrics".to_owned());
    }
    let count = |v: Option<f64>| v.map_or(0, |v| v.clamp(0.0, f64::from(u32::MAX)).round() as u32);
    Ok(EngineLoad { running: count(running), waiting: count(waiting), kv_usage: kv.map(|k| k.clamp(0.0, 1.0) as f32) })
}

/// `name{labels} value [timestamp]` → (name, value); `None` for comments and malformed lines.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    if rest.starts_with('{') {
        rest = &rest[labels_end(rest)?..];
    }
    let value = rest.split_whitespace().next()?;
    Some((name, value.parse().ok()?))
}

/// The byte after the `}` closing the label set that `s` starts with (quotes and escapes honoured).
fn labels_end(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, '}') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn samples_are_read_with_any_labels_and_comments_skipped() {
        assert_eq!(sample("# TYPE vllm:num_requests_running gauge"), None);
        assert_eq!(sample("a:b 3"), Some(("a:b", 3.0)));
        assert_eq!(sample(r#"a:b{x="1",y="q}\"z"} 2.5 1700000000"#), Some(("a:b", 2.5)));
        assert_eq!(sample("a:b{x=\"1\"}"), None, "no value");
        assert_eq!(sample("a:b{x=\"1\" 4"), None, "unclosed labels");
    }

    /// `tests/data/llama-server-metrics.txt` is `GET /metrics` of a real `llama-server --metrics`
    /// (the vendored llama.cpp, `-np 1`) taken while it ran one request and held two more back.
    #[test]
    fn a_real_llama_server_page_reads_as_one_running_two_waiting() {
        let text = include_str!("../../tests/data/llama-server-metrics.txt");
        assert!(text.contains("# TYPE llamacpp:requests_deferred gauge"));
        let l = parse(text).unwrap();
        assert_eq!((l.running, l.waiting, l.kv_usage), (1, 2, None), "this build has no KV gauge");
    }

    #[test]
    fn vllm_gauges_are_summed_over_engines() {
        // The family names vLLM documents (docs/usage/metrics); two engines of one server.
        let text = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
            # TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n\
            vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 1.0\n\
            vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 5.0\n\
            vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\n\
            vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.75\n";
        let l = parse(text).unwrap();
        assert_eq!((l.running, l.waiting, l.kv_usage), (4, 5, Some(0.75)));
    }

    #[test]
    fn sglang_names_are_known_and_a_page_without_any_is_an_error() {
        let l =
            parse("sglang:num_running_reqs{model_name=\"m\"} 2\nsglang:num_queue_reqs{model_name=\"m\"} 7\n").unwrap();
        assert_eq!((l.running, l.waiting, l.kv_usage), (2, 7, None));
        assert!(parse("process_cpu_seconds_total 12\n").is_err());
        assert!(parse("").is_err());
    }
}
