//! The scheduler `ferrogate serve` picks for the CPUs it may use: tokio's current-thread
//! scheduler on one CPU (cheaper per request there; docs/BENCHMARKS.md), the multi-thread one
//! otherwise or when `TOKIO_WORKER_THREADS` asks for it. On either, the embedded engine answers
//! plain and streamed requests (its own threads, not the runtime's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;
use ferrogate_testkit::gateway::SMOLLM2;
use ferrogate_testkit::model_path;
use serde_json::{Value, json};

fn config() -> String {
    format!(
        "[backends.smol]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = 2\nctx_per_seq = 512\nthreads = 1\n\
         [deployments.smol]\nbackends = [\"smol\"]\n",
        model_path(SMOLLM2).display()
    )
}

/// The `runtime started` log line (JSON, fields flattened).
fn runtime_line(server: &Server) -> Value {
    let log = std::fs::read_to_string(&server.log).unwrap();
    let line = log.lines().find(|l| l.contains("runtime started")).unwrap_or_else(|| panic!("no runtime line:\n{log}"));
    serde_json::from_str(line).unwrap()
}

/// A plain and a streamed chat completion from the real model, both complete.
async fn both_kinds_answer(server: &Server) {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", server.url);
    let body = |stream: bool| json!({"model": "smol", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "stream": stream});
    let plain: Value = http.post(&url).json(&body(false)).send().await.unwrap().json().await.unwrap();
    assert!(plain["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{plain}");
    let stream = http.post(&url).json(&body(true)).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let text = stream.text().await.unwrap();
    assert!(text.contains("\"finish_reason\":\"") && text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[tokio::test]
async fn one_cpu_runs_the_current_thread_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_pinned(dir.path(), "one", &config(), "0", &[]).await;
    let fields = runtime_line(&server);
    assert_eq!(
        (fields["scheduler"].as_str(), fields["workers"].as_u64()),
        (Some("current_thread"), Some(1)),
        "{fields}"
    );
    both_kinds_answer(&server).await;
}

#[tokio::test]
async fn tokio_worker_threads_asks_for_the_multi_thread_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_pinned(dir.path(), "asked", &config(), "0", &[("TOKIO_WORKER_THREADS", "2")]).await;
    let fields = runtime_line(&server);
    assert_eq!((fields["scheduler"].as_str(), fields["workers"].as_u64()), (Some("multi_thread"), Some(2)), "{fields}");
    both_kinds_answer(&server).await;
}

#[tokio::test]
async fn several_cpus_run_the_multi_thread_scheduler() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    if cpus < 2 {
        eprintln!("skipped: this process may use one CPU only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_pinned(dir.path(), "several", &config(), "0,1", &[]).await;
    let fields = runtime_line(&server);
    assert_eq!((fields["scheduler"].as_str(), fields["workers"].as_u64()), (Some("multi_thread"), Some(2)), "{fields}");
    both_kinds_answer(&server).await;
}
