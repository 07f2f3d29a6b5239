//! `ferrogate bench`: a streaming load generator for any OpenAI-compatible server. For each
//! concurrency level it runs N streaming `/v1/chat/completions` requests from C concurrent
//! clients and prints one markdown row: aggregate completion tokens/s, mean and p95
//! time-to-first-token, mean inter-token latency.
//!
//! Works the same against ferrogate and llama.cpp's llama-server (scripts/bench-engine.sh runs
//! both in one go). SSE is parsed line by line; token counts come from the final `usage` chunk
//! (`stream_options.include_usage`), else from the number of content chunks.
//!
//! Every failed request is counted by cause (`failures`, with one example message each) and
//! logged, so a report never hides why a server completed fewer requests. A request whose pooled
//! keep-alive connection the server had already closed — nothing of the request was processed,
//! no response byte came back — is sent once more on a new connection and counted in
//! `reconnects`: llama-server's HTTP library closes a kept-alive connection after a fixed number
//! of requests, and without this the race counted as a failure against it.

use std::collections::BTreeMap;
use std::error::Error as _;
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
    /// Failed requests by cause (`connect`, `http 503`, `stream error`, ...).
    failures: BTreeMap<String, Failure>,
    /// Requests sent again because their kept-alive connection was found closed.
    reconnects: usize,
    completion_tokens: u64,
    wall_secs: f64,
    tokens_per_sec: f64,
    ttft_mean_ms: f64,
    ttft_p95_ms: f64,
    itl_mean_ms: f64,
    /// Per-request time per output token after the first (decode latency a client sees).
    tpot_p50_ms: f64,
    tpot_p95_ms: f64,
}

/// How often one cause of failure happened, with the first message seen.
#[derive(Debug, Clone, serde::Serialize)]
struct Failure {
    count: usize,
    example: String,
}

/// Why a request failed: the cause's name (a report column) and the full message.
#[derive(Debug)]
struct RequestError {
    cause: &'static str,
    message: String,
}

impl RequestError {
    fn new(cause: &'static str, message: impl Into<String>) -> Self {
        Self { cause, message: message.into() }
    }

    /// Classifies a reqwest error; `stale` is true when a pooled connection was closed by the
    /// server before any of the response arrived (the request may be sent again).
    fn from_reqwest(e: &reqwest::Error, phase: &'static str) -> (Self, bool) {
        let chain = error_chain(e);
        let closed = chain.contains("connection closed before message completed")
            || chain.contains("IncompleteMessage")
            || chain.contains("connection reset");
        let cause = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if closed && phase == "send" {
            "connection closed before response"
        } else if phase == "send" {
            "send"
        } else {
            "reading the stream"
        };
        (Self::new(cause, chain), closed && phase == "send" && !e.is_timeout())
    }
}

/// An error and its sources, `: `-joined (reqwest's own message hides the hyper cause).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
        bench.warm_up().await?;
    }
    let mut out = std::io::stdout().lock();
    if !bench.args.no_header {
        writeln!(
            out,
            "| server | clients | requests | errors | completion tok/s | TTFT mean ms | TTFT p95 ms | ITL mean ms | TPOT p50 ms | TPOT p95 ms |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    }
    drop(out);
    let mut results = Vec::new();
    for &c in &bench.args.concurrency {
        let r = bench.level(c).await;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} |",
            r.label,
            r.concurrency,
            r.requests,
            r.errors,
            r.tokens_per_sec,
            r.ttft_mean_ms,
            r.ttft_p95_ms,
            r.itl_mean_ms,
            r.tpot_p50_ms,
            r.tpot_p95_ms
        )?;
        out.flush()?;
        for (cause, f) in &r.failures {
            eprintln!("{} at {} clients: {} failed: {cause} (e.g. {})", r.label, r.concurrency, f.count, f.example);
        }
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
        let mut outcome = Outcome::default();
        for w in workers {
            match w.await {
                Ok(o) => outcome.merge(o),
                Err(e) => outcome.fail(RequestError::new("bench worker panicked", e.to_string())),
            }
        }
        summarize(&self.args.label, concurrency, &outcome, started.elapsed())
    }

    /// Takes request numbers until `planned` are taken (or the deadline passes).
    async fn worker(&self, next: &AtomicUsize, planned: usize, deadline: Option<Instant>) -> Outcome {
        let mut outcome = Outcome::default();
        loop {
            match deadline {
                Some(d) if Instant::now() >= d => break,
                Some(_) => {}
                None if next.fetch_add(1, Ordering::Relaxed) >= planned => break,
                None => {}
            }
            match self.one_with_reconnect(&mut outcome.reconnects).await {
                Ok(s) => outcome.samples.push(s),
                Err(e) => {
                    tracing::warn!(cause = e.cause, error = %e.message, "bench request failed");
                    outcome.fail(e);
                }
            }
        }
        outcome
    }

    /// One request; sent once more if its pooled connection turned out to be closed.
    async fn one_with_reconnect(&self, reconnects: &mut usize) -> Result<Sample, RequestError> {
        match self.one().await {
            Err((e, true)) => {
                *reconnects += 1;
                tracing::info!(cause = e.cause, error = %e.message, "kept-alive connection found closed; sending again");
                self.one().await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One streamed request; on error, whether it may be sent again (stale connection).
    async fn one(&self) -> Result<Sample, (RequestError, bool)> {
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
        let resp = req.send().await.map_err(|e| RequestError::from_reqwest(&e, "send"))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let message = format!("HTTP {status}: {}", text.chars().take(300).collect::<String>());
            return Err((RequestError::new(status_cause(status.as_u16()), message), false));
        }
        read_stream(resp, t0).await.map_err(|e| (e, false))
    }

    /// The warm-up: one request that must succeed.
    async fn warm_up(&self) -> anyhow::Result<()> {
        let mut reconnects = 0;
        self.one_with_reconnect(&mut reconnects)
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!("warm-up request failed: {}: {}", e.cause, e.message))
    }
}

/// What a worker (or a whole level) collected.
#[derive(Debug, Default)]
struct Outcome {
    samples: Vec<Sample>,
    failures: BTreeMap<String, Failure>,
    reconnects: usize,
}

impl Outcome {
    fn fail(&mut self, e: RequestError) {
        self.failures
            .entry(e.cause.to_owned())
            .and_modify(|f| f.count += 1)
            .or_insert(Failure { count: 1, example: e.message.chars().take(300).collect() });
    }

    fn merge(&mut self, other: Outcome) {
        self.samples.extend(other.samples);
        self.reconnects += other.reconnects;
        for (cause, f) in other.failures {
            self.failures.entry(cause).and_modify(|mine| mine.count += f.count).or_insert(f);
        }
    }

    fn errors(&self) -> usize {
        self.failures.values().map(|f| f.count).sum()
    }
}

/// A report column for an HTTP error status (closed set: the common ones by number).
fn status_cause(status: u16) -> &'static str {
    match status {
        400 => "http 400",
        404 => "http 404",
        408 => "http 408",
        429 => "http 429",
        500 => "http 500",
        502 => "http 502",
        503 => "http 503",
        504 => "http 504",
        s if s < 500 => "http 4xx",
        _ => "http 5xx",
    }
}

/// Reads an SSE body line by line until `data: [DONE]` (or the end of the body).
async fn read_stream(resp: reqwest::Response, t0: Instant) -> Result<Sample, RequestError> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut sample = Sample::default();
    let mut first: Option<Duration> = None;
    let mut chunks = 0u64;
    let mut usage: Option<u64> = None;
    'body: while let Some(bytes) = stream.next().await {
        let bytes = bytes.map_err(|e| RequestError::from_reqwest(&e, "read").0)?;
        buf.extend_from_slice(&bytes);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
            let data = data.trim_start();
            if data == "[DONE]" {
                break 'body;
            }
            let event: Value = serde_json::from_str(data)
                .map_err(|e| RequestError::new("data line not JSON", format!("{e}: {data}")))?;
            if let Some(err) = event.get("error") {
                return Err(RequestError::new("stream error", err.to_string()));
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

fn summarize(label: &str, concurrency: usize, outcome: &Outcome, wall: Duration) -> LevelResult {
    let samples = &outcome.samples;
    let tokens: u64 = samples.iter().map(|s| s.completion_tokens).sum();
    let mut ttfts: Vec<f64> = samples.iter().map(|s| ms(s.ttft)).collect();
    ttfts.sort_by(f64::total_cmp);
    let mut itls: Vec<f64> = samples
        .iter()
        .filter(|s| s.completion_tokens > 1)
        .map(|s| ms(s.total.saturating_sub(s.ttft)) / (s.completion_tokens - 1) as f64)
        .collect();
    let itl_mean_ms = mean(&itls);
    itls.sort_by(f64::total_cmp);
    LevelResult {
        label: label.to_owned(),
        concurrency,
        requests: samples.len(),
        errors: outcome.errors(),
        failures: outcome.failures.clone(),
        reconnects: outcome.reconnects,
        completion_tokens: tokens,
        wall_secs: wall.as_secs_f64(),
        tokens_per_sec: tokens as f64 / wall.as_secs_f64().max(1e-9),
        ttft_mean_ms: mean(&ttfts),
        ttft_p95_ms: percentile(&ttfts, 0.95),
        itl_mean_ms,
        tpot_p50_ms: percentile(&itls, 0.50),
        tpot_p95_ms: percentile(&itls, 0.95),
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
        let outcome = Outcome { samples: vec![s.clone(), s], ..Outcome::default() };
        let r = summarize("x", 2, &outcome, Duration::from_secs(2));
        assert_eq!(r.completion_tokens, 22);
        assert!((r.tpot_p50_ms - 100.0).abs() < 1e-9);
        assert!((r.tokens_per_sec - 11.0).abs() < 1e-9);
        assert!((r.itl_mean_ms - 100.0).abs() < 1e-9);
        assert!((r.ttft_mean_ms - 100.0).abs() < 1e-9);
    }

    #[test]
    fn failures_are_counted_by_cause_with_an_example() {
        let mut a = Outcome::default();
        a.fail(RequestError::new("http 503", "HTTP 503: queue full"));
        a.fail(RequestError::new("http 503", "HTTP 503: again"));
        let mut b = Outcome { reconnects: 2, ..Outcome::default() };
        b.fail(RequestError::new("connect", "refused"));
        b.fail(RequestError::new("http 503", "HTTP 503: third"));
        a.merge(b);
        assert_eq!(a.errors(), 4);
        assert_eq!(a.reconnects, 2);
        assert_eq!(a.failures["http 503"].count, 3);
        assert_eq!(a.failures["http 503"].example, "HTTP 503: queue full");
        assert_eq!(a.failures["connect"].count, 1);
        let r = summarize("x", 1, &a, Duration::from_secs(1));
        assert_eq!(r.errors, 4);
        assert_eq!(r.failures.len(), 2);
    }

    #[test]
    fn statuses_map_to_closed_causes() {
        assert_eq!(status_cause(503), "http 503");
        assert_eq!(status_cause(418), "http 4xx");
        assert_eq!(status_cause(599), "http 5xx");
    }
}
