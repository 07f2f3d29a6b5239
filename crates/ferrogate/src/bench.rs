//! `ferrogate bench`: a streaming load generator for any OpenAI-compatible server. For each
//! concurrency level it runs N streaming `/v1/chat/completions` requests from C concurrent
//! clients and prints one markdown row: aggregate completion tokens/s, mean and p95
//! time-to-first-token, mean inter-token latency.
//!
//! Works the same against ferrogate and llama.cpp's llama-server (scripts/bench-engine.sh runs
//! both in one go). SSE is parsed line by line; token counts come from the final `usage` chunk
//! (`stream_options.include_usage`), else from the number of content chunks.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server base URL; `/v1/chat/completions` is appended.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The `model` field of each request.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    pub concurrency: Vec<usize>,
    /// Requests per level; 0 = 4 × concurrency (at least 8).
    #[arg(long, default_value_t = 0)]
    pub requests: usize,
    /// Run each level for this many seconds instead of a fixed request count.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// max_tokens of each request.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: u32,
    /// The user message of each request.
    #[arg(long, default_value = "Write a long story about a robot who learns to paint.")]
    pub prompt: String,
    /// Sampling temperature (0 = greedy: both servers generate the same text).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Requests sent (and not measured) before the first level.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// First column of the table, e.g. the server's name.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Bearer token for the Authorization header.
    #[arg(long, env = "FERROGATE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_secs: f64,
    /// Omit the markdown header (to append rows to an existing table).
    #[arg(long)]
    pub no_header: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What one streamed request measured.
#[derive(Debug, Default, Clone)]
struct Sample {
    ttft: Duration,
    total: Duration,
    completion_tokens: u64,
}

/// One concurrency level's results.
#[derive(Debug, Clone, serde::Serialize)]
struct LevelResult {
    label: String,
    concurrency: usize,
    requests: usize,
    errors: usize,
    completion_tokens: u64,
    wall_secs: f64,
    tokens_per_sec: f64,
    ttft_mean_ms: f64,
    ttft_p95_ms: f64,
    itl_mean_ms: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency needs levels of at least 1");
    }
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs_f64(args.timeout_secs))
        .build()
        .context("building the HTTP client")?;
    let bench = Arc::new(Bench { client, args });
    for _ in 0..bench.args.warmup {
        bench.one().await.context("warm-up request failed")?;
    }
    let mut out = std::io::stdout().lock();
    if !bench.args.no_header {
        writeln!(
            out,
            "| server | clients | requests | errors | completion tok/s | TTFT mean ms | TTFT p95 ms | ITL mean ms |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    }
    drop(out);
    let mut results = Vec::new();
    for &c in &bench.args.concurrency {
        let r = bench.level(c).await;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.1} |",
            r.label,
            r.concurrency,
            r.requests,
            r.errors,
            r.tokens_per_sec,
            r.ttft_mean_ms,
            r.ttft_p95_ms,
            r.itl_mean_ms
        )?;
        out.flush()?;
        results.push(r);
    }
    if let Some(path) = &bench.args.json {
        let body = serde_json::to_string_pretty(&results)?;
        std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

struct Bench {
    client: reqwest::Client,
    args: BenchArgs,
}

impl Bench {
    async fn level(self: &Arc<Self>, concurrency: usize) -> LevelResult {
        let planned = match self.args.requests {
            0 => (4 * concurrency).max(8),
            n => n.max(concurrency),
        };
        let deadline = self.args.duration_secs.map(|s| Instant::now() + Duration::from_secs_f64(s));
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let bench = Arc::clone(self);
                let next = Arc::clone(&next);
                tokio::spawn(async move { bench.worker(&next, planned, deadline).await })
            })
            .collect();
        let mut samples = Vec::new();
        let mut errors = 0;
        for w in workers {
            match w.await {
                Ok((ok, failed)) => {
                    samples.extend(ok);
                    errors += failed;
                }
                Err(_) => errors += 1,
            }
        }
        summarize(&self.args.label, concurrency, &samples, errors, started.elapsed())
    }

    /// Takes request numbers until `planned` are taken (or the deadline passes).
    async fn worker(&self, next: &AtomicUsize, planned: usize, deadline: Option<Instant>) -> (Vec<Sample>, usize) {
        let mut samples = Vec::new();
        let mut errors = 0;
        loop {
            match deadline {
                Some(d) if Instant::now() >= d => break,
                Some(_) => {}
                None if next.fetch_add(1, Ordering::Relaxed) >= planned => break,
                None => {}
            }
            match self.one().await {
                Ok(s) => samples.push(s),
                Err(e) => {
                    errors += 1;
                    tracing::warn!(error = %format!("{e:#}"), "bench request failed");
                }
            }
        }
        (samples, errors)
    }

    async fn one(&self) -> anyhow::Result<Sample> {
        let url = format!("{}/v1/chat/completions", self.args.url.trim_end_matches('/'));
        let body = json!({
            "model": self.args.model,
            "messages": [{"role": "user", "content": self.args.prompt}],
            "max_tokens": self.args.max_tokens,
            "temperature": self.args.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let mut req = self.client.post(&url).json(&body);
        if let Some(key) = &self.args.api_key {
            req = req.bearer_auth(key);
        }
        let t0 = Instant::now();
        let resp = req.send().await.context("sending")?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
        }
        read_stream(resp, t0).await
    }
}

/// Reads an SSE body line by line until `data: [DONE]` (or the end of the body).
async fn read_stream(resp: reqwest::Response, t0: Instant) -> anyhow::Result<Sample> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut sample = Sample::default();
    let mut first: Option<Duration> = None;
    let mut chunks = 0u64;
    let mut usage: Option<u64> = None;
    'body: while let Some(bytes) = stream.next().await {
        buf.extend_from_slice(&bytes.context("reading the stream")?);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
            let data = data.trim_start();
            if data == "[DONE]" {
                break 'body;
            }
            let event: Value = serde_json::from_str(data).context("a data line is not JSON")?;
            if let Some(err) = event.get("error") {
                bail!("stream error: {err}");
            }
            if let Some(n) = event.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
                usage = Some(n);
            }
            let has_text =
                event.pointer("/choices/0/delta/content").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if has_text {
                chunks += 1;
                first.get_or_insert_with(|| t0.elapsed());
            }
        }
    }
    sample.total = t0.elapsed();
    sample.ttft = first.unwrap_or(sample.total);
    sample.completion_tokens = usage.unwrap_or(chunks);
    Ok(sample)
}

fn summarize(label: &str, concurrency: usize, samples: &[Sample], errors: usize, wall: Duration) -> LevelResult {
    let tokens: u64 = samples.iter().map(|s| s.completion_tokens).sum();
    let mut ttfts: Vec<f64> = samples.iter().map(|s| ms(s.ttft)).collect();
    ttfts.sort_by(f64::total_cmp);
    let itls: Vec<f64> = samples
        .iter()
        .filter(|s| s.completion_tokens > 1)
        .map(|s| ms(s.total.saturating_sub(s.ttft)) / (s.completion_tokens - 1) as f64)
        .collect();
    LevelResult {
        label: label.to_owned(),
        concurrency,
        requests: samples.len(),
        errors,
        completion_tokens: tokens,
        wall_secs: wall.as_secs_f64(),
        tokens_per_sec: tokens as f64 / wall.as_secs_f64().max(1e-9),
        ttft_mean_ms: mean(&ttfts),
        ttft_p95_ms: percentile(&ttfts, 0.95),
        itl_mean_ms: mean(&itls),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[5.0], 0.95), 5.0);
        assert_eq!(percentile(&[], 0.95), 0.0);
    }

    #[test]
    fn summary_counts_tokens_over_wall_time() {
        let s = Sample { ttft: Duration::from_millis(100), total: Duration::from_millis(1100), completion_tokens: 11 };
        let r = summarize("x", 2, &[s.clone(), s], 0, Duration::from_secs(2));
        assert_eq!(r.completion_tokens, 22);
        assert!((r.tokens_per_sec - 11.0).abs() < 1e-9);
        assert!((r.itl_mean_ms - 100.0).abs() < 1e-9);
        assert!((r.ttft_mean_ms - 100.0).abs() < 1e-9);
    }
}
