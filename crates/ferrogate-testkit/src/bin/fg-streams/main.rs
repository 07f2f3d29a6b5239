//! `fg-streams`, the load tool of `make bench-streams` (issue 23 item 5): thousands of SSE streams
//! held open at once through a proxy to a slow-dripping upstream, every frame timed.
//!
//! - `upstream`: an OpenAI-compatible server whose streamed chat completions drip one chunk per
//!   interval (one task and one timer per stream, so it holds tens of thousands cheaply).
//! - `clients`: opens N streams, one connection each, ramped; reads every frame; prints one JSON
//!   object with the per-stream outcome summarized and, given `--pid`, the proxy's RSS and CPU.
//!
//! Bench tooling, not a test: it lives in the dev-only testkit and prints to stdout by design.

#![allow(clippy::print_stdout)] // the report is the program's output

mod clients;
mod procstat;
mod sse;
mod upstream;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fg-streams", about = "many concurrent SSE streams: a dripping upstream and the clients")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve POST /v1/chat/completions (stream: true drips frames) and GET /v1/models.
    Upstream(upstream::UpstreamArgs),
    /// Open N streams against a URL and print one JSON report.
    Clients(clients::ClientsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.cmd {
        Cmd::Upstream(args) => rt.block_on(upstream::run(args)),
        Cmd::Clients(args) => {
            let report = rt.block_on(clients::run(args))?;
            println!("{report}");
            Ok(())
        }
    }
}
