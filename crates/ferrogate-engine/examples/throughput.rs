//! Engine-only throughput (no HTTP): C concurrent greedy chat requests, aggregate tokens/s.
//! `cargo run --release -p ferrogate-engine --example throughput -- [clients] [requests] [max_tokens]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use ferrogate_engine::{Engine, EngineConfig, GenEvent, GenerateRequest, SamplingParams};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (clients, requests, max_tokens) =
        (args.first().copied().unwrap_or(8), args.get(1).copied().unwrap_or(16), args.get(2).copied().unwrap_or(64));
    let cfg = EngineConfig { parallel: Some(8), ..EngineConfig::new("SmolLM2-135M-Instruct.Q4_1.gguf") };
    let engine = Engine::start(cfg).unwrap();
    engine.wait_ready().await.unwrap();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (engine, next) = (engine.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let req = GenerateRequest {
                    sampling: SamplingParams::greedy(),
                    max_tokens: Some(max_tokens as u32),
                    ..GenerateRequest::chat(vec![serde_json::json!({"role": "user", "content": "Write a long story about a robot who learns to paint."})])
                };
                let mut g = engine.submit(req).unwrap();
                while let Some(ev) = g.next().await {
                    if let GenEvent::Done(f) = ev {
                        tokens += u64::from(f.completion_tokens);
                    }
                }
            }
            tokens
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("clients {clients}: {total} tokens in {secs:.2}s = {:.1} tok/s", total as f64 / secs);
}
