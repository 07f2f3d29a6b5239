//! What one rate-limit check costs: the in-process store and Redis, for the counters of the
//! overhead benchmark's rules (a global, a per-IP and a per-model rule, each with a request and a
//! token rate: six counters under three keys; the per-model one a sliding window), at concurrency 1
//! (latency per check, p50/p99) and with many checks in flight (checks per second).
//!
//! `ferrogate bench-limits [--redis-url URL] [--quick]` (`make bench-limits` runs it on a release
//! build). Keys go under a fresh `ferrogate-bench:<pid>:` prefix and expire by themselves.
//! Limits are high enough never to refuse: this measures the check, not the refusal. Prints a
//! markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrogate_core::limits::memory::MemoryLimitStore;
use ferrogate_core::limits::{Algorithm, Check, Dim, LimitStore, Quota, Refund};
use ferrogate_core::tenancy::time::SystemClock;
use ferrogate_store::redis_limits::{RedisLimitStore, RedisOptions};

#[derive(clap::Args)]
pub struct BenchLimitsArgs {
    /// The Redis to measure (skipped, with a note, when it does not answer).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Fewer iterations: checks the harness, not a measurement.
    #[arg(long)]
    quick: bool,
}

/// The largest rate a rule may have (`limits.rules[].requests_per_minute`).
const HUGE: u64 = 60_000_000;

fn checks(i: usize) -> Vec<Check> {
    let q = |a| Quota::per_minute(a, HUGE);
    let ip = format!("r:ip:ip:10.0.{}.{}", (i / 256) % 256, i % 256);
    let mut out = Vec::with_capacity(6);
    for (key, algorithm) in
        [("r:global:global:-", Algorithm::Gcra), (&ip, Algorithm::Gcra), ("r:model:model:m", Algorithm::SlidingWindow)]
    {
        out.push(Check { key: key.to_owned(), dim: Dim::Requests, quota: q(algorithm), cost: 1 });
        out.push(Check { key: key.to_owned(), dim: Dim::Tokens, quota: q(algorithm), cost: 10 });
    }
    out
}

fn pct(xs: &mut [Duration], p: f64) -> f64 {
    xs.sort_unstable();
    let i = ((xs.len() as f64) * p / 100.0) as usize;
    xs[i.min(xs.len() - 1)].as_secs_f64() * 1e6
}

/// Sequential checks: (p50 µs, p99 µs, mean µs).
async fn sequential(store: &dyn LimitStore, n: usize, refund: bool) -> Result<(f64, f64, f64), String> {
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let c = checks(i);
        let t = Instant::now();
        let a = store.acquire(&c).await.map_err(|e| e.to_string())?;
        if !a.allowed {
            return Err("a check was refused: the bench limits are too low".into());
        }
        if refund {
            let refunds = c.iter().filter(|c| c.dim == Dim::Tokens).map(|c| Refund {
                key: c.key.clone(),
                dim: c.dim,
                quota: c.quota,
                units: 6,
                charged_at_us: a.now_us,
            });
            store.release(refunds.collect());
        }
        lat.push(t.elapsed());
    }
    let mean = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok((pct(&mut lat, 50.0), pct(&mut lat, 99.0), mean))
}

/// `conc` tasks doing `n` checks in total: checks per second.
async fn concurrent(store: Arc<dyn LimitStore>, n: usize, conc: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let s = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..n / conc {
                    s.acquire(&checks(w * n + i)).await.map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

pub async fn run(args: BenchLimitsArgs) -> Result<(), String> {
    let (n_mem, n_redis) = if args.quick { (20_000, 2_000) } else { (500_000, 50_000) };
    println!("| store | mode | p50 (µs) | p99 (µs) | mean (µs) | checks/s |");
    println!("|---|---|---:|---:|---:|---:|");
    let mem: Arc<dyn LimitStore> = Arc::new(MemoryLimitStore::new(Arc::new(SystemClock)));
    sequential(mem.as_ref(), n_mem / 10, false).await?; // warm-up
    for (label, refund) in [("check, c=1", false), ("check + refund, c=1", true)] {
        let (p50, p99, mean) = sequential(mem.as_ref(), n_mem, refund).await?;
        println!("| memory | {label} | {p50:.2} | {p99:.2} | {mean:.2} | {:.0} |", 1e6 / mean);
    }
    let rate = concurrent(Arc::clone(&mem), n_mem, 64).await?;
    println!("| memory | check, 64 tasks | | | | {rate:.0} |");

    let prefix = format!("ferrogate-bench:{}:", std::process::id());
    let opts = RedisOptions { key_prefix: prefix, timeout: Duration::from_secs(1) };
    let redis: Arc<dyn LimitStore> = Arc::new(RedisLimitStore::open(&args.redis_url, opts)?);
    if let Err(e) = redis.acquire(&checks(0)).await {
        println!("\nRedis did not answer ({e}); Redis rows skipped.");
        return Ok(());
    }
    sequential(redis.as_ref(), n_redis / 10, false).await?;
    let (p50, p99, mean) = sequential(redis.as_ref(), n_redis, false).await?;
    println!("| redis | check (one script round trip), c=1 | {p50:.1} | {p99:.1} | {mean:.1} | {:.0} |", 1e6 / mean);
    for conc in [16, 64] {
        let rate = concurrent(Arc::clone(&redis), n_redis, conc).await?;
        println!("| redis | check, {conc} in flight | | | | {rate:.0} |");
    }
    Ok(())
}
