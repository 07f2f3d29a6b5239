//! Allocations per proxied request (issue 23): the real gateway, in process, in front of a fake
//! OpenAI upstream, with a counting global allocator. Counts, not time: a busy machine is fine.
//!
//! Only the gateway's own threads are counted: the gateway runs on a runtime of its own whose
//! threads set a thread-local flag; the client and the fake upstream run on the main thread,
//! which is not counted. Each mode is warmed up (pool, caches), then `N` sequential requests are
//! sent and the allocations (and reallocations) made meanwhile are divided by `N`.
//!
//! `cargo run -p ferrogate --example allocs_per_request [-- REQUESTS]`. Not part of the
//! production binary: the counting allocator lives here only.

// A global allocator is an `unsafe impl`: this benchmark-only binary opts out of the workspace's
// `unsafe_code = "deny"` for it alone.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrogate_testkit::upstream::{FakeUpstream, chat_json, chat_sse};
use serde_json::{Value, json};

// === the counting allocator ===

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the gateway runtime's threads: only their allocations count.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

impl Counting {
    fn note(size: usize) {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// === the run ===

const WARMUP: usize = 200;

fn snapshot() -> (u64, u64) {
    (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed))
}

async fn one(client: &reqwest::Client, url: &str, body: &Value) {
    let res = client.post(url).json(body).send().await.expect("the gateway answers");
    assert!(res.status().is_success(), "status {}", res.status());
    let bytes = res.bytes().await.expect("a whole body");
    assert!(!bytes.is_empty());
}

async fn measure(client: &reqwest::Client, url: &str, body: &Value, n: usize) -> (f64, f64) {
    for _ in 0..WARMUP {
        one(client, url, body).await;
    }
    let (a0, b0) = snapshot();
    for _ in 0..n {
        one(client, url, body).await;
    }
    let (a1, b1) = snapshot();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .enable_all()
        .build()
        .unwrap();
    let main_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let fake = main_rt.block_on(FakeUpstream::openai()).unwrap();
    let pieces = ["Hello", ",", " world", "!", " How", " are", " you", "?"];
    fake.on(
        "/v1/chat/completions",
        ferrogate_testkit::upstream::Reply::dynamic(move |r| {
            if r.wants_stream(false) {
                chat_sse(&pieces, Some((9, 8))).into()
            } else {
                chat_json("Hello, world!", Some((9, 4)))
            }
        }),
    );
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"fake-model\"]\n\
         [deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    );
    let cfg = ferrogate::config::load_str(&toml).expect("valid config");
    let running = gateway_rt.block_on(async {
        // Started from inside the gateway runtime so its tasks live there.
        tokio::spawn(async move { ferrogate::start(&cfg, std::future::pending()).await.expect("gateway starts") })
            .await
            .unwrap()
    });
    let url = format!("http://{}/v1/chat/completions", running.addr);
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let msg = json!([{"role": "user", "content": "Say hello."}]);
    let whole = json!({"model": "m", "messages": msg, "max_tokens": 16});
    let stream = json!({"model": "m", "messages": msg, "max_tokens": 16, "stream": true});
    let stream_usage = json!({"model": "m", "messages": msg, "max_tokens": 16, "stream": true,
        "stream_options": {"include_usage": true}});

    println!("allocations per proxied request on the gateway's threads ({n} requests after {WARMUP} warm-up)");
    println!("| request | allocations | bytes allocated |");
    println!("|---|---:|---:|");
    for (label, body) in [
        ("chat, JSON", &whole),
        ("chat, SSE (8 content chunks)", &stream),
        ("chat, SSE + include_usage", &stream_usage),
    ] {
        let (allocs, bytes) = main_rt.block_on(measure(&client, &url, body, n));
        println!("| {label} | {allocs:.1} | {bytes:.0} |");
    }
    drop(running);
    gateway_rt.shutdown_background();
}
