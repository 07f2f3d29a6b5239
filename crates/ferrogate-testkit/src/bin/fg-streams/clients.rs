//! The clients: N streamed chat completions, each on its own HTTP/1.1 connection, started evenly
//! over `--ramp-ms` (so the proxy's accept queue is not what is measured), each read to its end.
//!
//! A stream is ok when it answered 200, delivered `data: [DONE]` with no error event, and (with
//! `--frames`) exactly that many content frames. Everything else is counted by reason. The report
//! also carries the gaps (longest pause between two data events), the time to the first body
//! byte, the most streams open at once, and the watched processes' RSS and CPU.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::procstat::{Sampler, Usage, cpu_seconds, mb};
use crate::sse::SseTally;

#[derive(clap::Args)]
pub struct ClientsArgs {
    /// Base URL of the target, e.g. http://127.0.0.1:8080 (requests go to /v1/chat/completions).
    #[arg(long)]
    url: url::Url,
    /// Model to ask for.
    #[arg(long, default_value = "m")]
    model: String,
    /// Streams to open.
    #[arg(short = 'n', long = "streams", default_value_t = 10_000)]
    streams: usize,
    /// Spread the stream starts evenly over this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    ramp_ms: u64,
    /// Bearer key to send.
    #[arg(long)]
    key: Option<String>,
    /// Content frames each stream must deliver (unchecked when absent).
    #[arg(long)]
    frames: Option<u64>,
    /// Processes to sample (RSS, CPU), comma-separated; their sums are reported.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// A stream still open this long after its start fails as `timeout`.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

/// What every stream shares: where to connect and what to send.
struct Target {
    addr: SocketAddr,
    host: String,
    body: Bytes,
    auth: Option<header::HeaderValue>,
    timeout: Duration,
    open: AtomicUsize,
    peak_open: AtomicUsize,
}

/// How one stream went.
#[derive(Default)]
struct Outcome {
    failure: Option<String>,
    tally: SseTally,
    ttfb: Option<Duration>,
}

pub async fn run(args: ClientsArgs) -> anyhow::Result<Value> {
    let target = Arc::new(Target::new(&args).await?);
    let before = Usage::of(&args.pid);
    let own_before = Usage::own();
    let sampler = Sampler::start(args.pid.clone());
    let started = Instant::now();
    let outcomes = run_streams(&target, args.streams, Duration::from_millis(args.ramp_ms)).await;
    let wall = started.elapsed();
    let (after, own_after) = (Usage::of(&args.pid), Usage::own());
    let (peak, own_peak) = sampler.peaks(after, own_after);
    let mut report = summarize(&outcomes, args.frames);
    let watched = !args.pid.is_empty();
    let extra = json!({
        "url": args.url.as_str(),
        "peak_open": target.peak_open.load(Ordering::Relaxed),
        "wall_s": (wall.as_secs_f64() * 100.0).round() / 100.0,
        "pids": args.pid,
        "rss_before_mb": watched.then(|| mb(before.rss_kb)),
        "rss_peak_mb": watched.then(|| mb(peak)),
        "rss_after_mb": watched.then(|| mb(after.rss_kb)),
        "cpu_s": watched.then(|| cpu_seconds(after.cpu_ticks.saturating_sub(before.cpu_ticks))),
        "client_rss_peak_mb": mb(own_peak),
        "client_cpu_s": cpu_seconds(own_after.cpu_ticks.saturating_sub(own_before.cpu_ticks)),
    });
    if let (Value::Object(r), Value::Object(e)) = (&mut report, extra) {
        r.extend(e);
    }
    Ok(report)
}

async fn run_streams(target: &Arc<Target>, n: usize, ramp: Duration) -> Vec<Outcome> {
    let t0 = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for i in 0..n {
        let at = t0 + ramp.mul_f64(i as f64 / n.max(1) as f64);
        let target = Arc::clone(target);
        set.spawn(async move {
            tokio::time::sleep_until(at).await;
            one_stream(&target).await
        });
    }
    let mut outcomes = Vec::with_capacity(n);
    while let Some(done) = set.join_next().await {
        outcomes.push(done.unwrap_or_else(|e| Outcome { failure: Some(format!("panic: {e}")), ..Outcome::default() }));
    }
    outcomes
}

async fn one_stream(target: &Target) -> Outcome {
    let mut out = Outcome::default();
    let result = tokio::time::timeout(target.timeout, drive(target, &mut out)).await;
    out.failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(_) => Some("timeout".into()),
    };
    out
}

/// Connects, sends the request and reads the body to its end, filling `out` as frames arrive
/// (so a stream cut short by the timeout still reports what it got).
async fn drive(target: &Target, out: &mut Outcome) -> Result<(), String> {
    let tcp = TcpStream::connect(target.addr).await.map_err(|e| io_reason("connect", &e))?;
    let _ = tcp.set_nodelay(true);
    let _open = OpenGuard::enter(target);
    let (mut send, conn) = http1::handshake(TokioIo::new(tcp)).await.map_err(|_| "handshake".to_owned())?;
    tokio::spawn(conn);
    let sent = Instant::now();
    let resp = send.send_request(target.request()).await.map_err(|e| hyper_reason("response_head", &e))?;
    drop(send);
    if !resp.status().is_success() {
        return Err(format!("status_{}", resp.status().as_u16()));
    }
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_reason("body", &e))?;
        if let Ok(data) = frame.into_data() {
            let now = Instant::now();
            out.ttfb.get_or_insert(now - sent);
            out.tally.feed(&data, now);
        }
    }
    Ok(())
}

fn io_reason(stage: &str, e: &std::io::Error) -> String {
    format!("{stage}_{:?}", e.kind()).to_lowercase()
}

fn hyper_reason(stage: &str, e: &hyper::Error) -> String {
    let kind = if e.is_incomplete_message() {
        "incomplete"
    } else if e.is_closed() || e.is_canceled() {
        "closed"
    } else {
        "error"
    };
    format!("{stage}_{kind}")
}

// === impl Target ===

impl Target {
    async fn new(args: &ClientsArgs) -> anyhow::Result<Target> {
        let host = args.url.host_str().context("--url needs a host")?.to_owned();
        let port = args.url.port_or_known_default().context("--url needs a port")?;
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .with_context(|| format!("{host} did not resolve"))?;
        let body = json!({
            "model": args.model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Say tok, many times."}],
        });
        let auth = match &args.key {
            Some(k) => Some(header::HeaderValue::from_str(&format!("Bearer {k}"))?),
            None => None,
        };
        Ok(Target {
            addr,
            host: format!("{host}:{port}"),
            body: Bytes::from(body.to_string()),
            auth,
            timeout: Duration::from_secs(args.timeout_s),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = hyper::Uri::from_static("/v1/chat/completions");
        let h = req.headers_mut();
        if let Ok(host) = header::HeaderValue::from_str(&self.host) {
            h.insert(header::HOST, host);
        }
        h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        h.insert(header::ACCEPT, header::HeaderValue::from_static("text/event-stream"));
        if let Some(auth) = &self.auth {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        req
    }
}

/// Counts a stream as open from its connect to its end, keeping the peak.
struct OpenGuard<'a>(&'a Target);

impl<'a> OpenGuard<'a> {
    fn enter(target: &'a Target) -> Self {
        let now = target.open.fetch_add(1, Ordering::Relaxed) + 1;
        target.peak_open.fetch_max(now, Ordering::Relaxed);
        OpenGuard(target)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

// === the summary ===

fn summarize(outcomes: &[Outcome], frames: Option<u64>) -> Value {
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes {
        if let Some(reason) = verdict(o, frames) {
            *failed.entry(reason).or_default() += 1;
        }
    }
    let mut gaps: Vec<Duration> = outcomes.iter().map(|o| o.tally.max_gap).collect();
    let mut ttfbs: Vec<Duration> = outcomes.iter().filter_map(|o| o.ttfb).collect();
    gaps.sort_unstable();
    ttfbs.sort_unstable();
    let received: u64 = outcomes.iter().map(|o| o.tally.content_frames).sum();
    json!({
        "streams": outcomes.len(),
        "ok": outcomes.len() - failed.values().sum::<usize>(),
        "failed": failed,
        "done": outcomes.iter().filter(|o| o.tally.done).count(),
        "frames_expected": frames.map(|f| f * outcomes.len() as u64),
        "frames_received": received,
        "max_gap_ms": ms(gaps.last().copied()),
        "p99_gap_ms": ms(percentile(&gaps, 0.99)),
        "p50_gap_ms": ms(percentile(&gaps, 0.50)),
        "ttfb_p50_ms": ms(percentile(&ttfbs, 0.50)),
        "ttfb_p99_ms": ms(percentile(&ttfbs, 0.99)),
    })
}

/// Why a stream failed, or `None` when it is ok.
fn verdict(o: &Outcome, frames: Option<u64>) -> Option<String> {
    if let Some(reason) = &o.failure {
        return Some(reason.clone());
    }
    let t = &o.tally;
    if t.error {
        Some("error_event".into())
    } else if !t.done {
        Some("no_done".into())
    } else if frames.is_some_and(|f| f != t.content_frames) {
        Some("frames_mismatch".into())
    } else {
        None
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0)
}
