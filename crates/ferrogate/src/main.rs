//! The `ferrogate` command: `serve`, `config check`, `bench`, `bench-limits`, and the admin API's client:
//! `tenants`, `keys`, `usage`.

#![allow(clippy::print_stdout)] // the CLI talks to its user on stdout

mod admin;
mod admin_dlq;
mod bench;
mod bench_limits;
mod logline;
mod logsink;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrogate::config::{self, LogFormat};
use tracing_subscriber::EnvFilter;

/// The process's heap: jemalloc's per-thread caches and size-class slabs cost less CPU per proxied
/// request than glibc's arenas and hold thousands of open streams in less memory
/// (docs/BENCHMARKS.md, "jemalloc"). Built with one arena per CPU (`.cargo/config.toml`);
/// `_RJEM_MALLOC_CONF` overrides its options at run time.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static HEAP: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "ferrogate", version, about = "An LLM inference gateway with an embedded llama.cpp engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API.
    Serve {
        /// TOML configuration file (optional: without one the embedded default model is served).
        #[arg(long, short, env = "FERROGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Load generator: streaming requests at several concurrency levels (TTFT, tokens/s).
    Bench(bench::BenchArgs),
    /// What a rate-limit check costs, in process and on Redis (docs/GOVERNANCE.md).
    BenchLimits(bench_limits::BenchLimitsArgs),
    /// Tenants (teams) — admin API client (FERROGATE_MASTER_KEY, --url).
    Tenants {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::TenantCommand,
    },
    /// API keys — admin API client (FERROGATE_MASTER_KEY, --url).
    Keys {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin::KeyCommand,
    },
    /// Usage report from the ledger — admin API client (FERROGATE_MASTER_KEY, --url).
    Usage {
        #[command(flatten)]
        target: admin::Target,
        #[command(flatten)]
        args: admin::UsageArgs,
    },
    /// The dead-letter queue of background work — admin API client (FERROGATE_MASTER_KEY, --url).
    Dlq {
        #[command(flatten)]
        target: admin::Target,
        #[command(subcommand)]
        command: admin_dlq::DlqCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a configuration file; prints every problem at once (exit 2 if any).
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::Config { command: ConfigCommand::Check { file } } => check(&file),
        Command::Tenants { target, command } => client(admin::tenants(target, command)),
        Command::Keys { target, command } => client(admin::keys(target, command)),
        Command::Usage { target, args } => client(admin::usage(target, args)),
        Command::Dlq { target, command } => client(admin_dlq::dlq(target, command)),
        Command::BenchLimits(args) => match runtime().and_then(|rt| rt.block_on(bench_limits::run(args))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench-limits failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => {
            runtime().and_then(|rt| rt.block_on(bench::run(args)).map_err(|e| e.to_string())).map_or_else(
                |e| {
                    eprintln!("bench failed: {e}");
                    ExitCode::FAILURE
                },
                |()| ExitCode::SUCCESS,
            )
        }
    }
}

/// Runs an admin-API command; errors go to stderr with exit code 1.
fn client(cmd: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match runtime().map_err(anyhow::Error::msg).and_then(|rt| rt.block_on(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime everything runs on. With one CPU to run on (the process's affinity mask or its
/// cgroup's CPU quota, as `available_parallelism` reads them: `taskset -c 0`, a container with
/// `cpus: 1`), tokio's current-thread scheduler: the multi-thread scheduler's one worker would do
/// the same work through cross-thread machinery (atomic run queues, work-stealing checks) — 0.81×
/// the CPU per request at 64 concurrent JSON requests with it (docs/BENCHMARKS.md). Blocking work
/// never runs on either (`spawn_blocking`, the engine's and the ledger's own threads).
/// `TOKIO_WORKER_THREADS` set: the multi-thread scheduler with that many workers, as tokio reads it.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().map_err(|e| format!("cannot start the runtime: {e}"))
}

fn check(file: &std::path::Path) -> ExitCode {
    match config::load(Some(file), None) {
        Ok(c) => {
            // The database URL may carry a password: only its scheme is shown.
            let tenancy = c.tenancy.as_ref().map_or_else(
                || "tenancy off".to_owned(),
                |t| {
                    let db = t.database_url.expose().split(':').next().unwrap_or("?");
                    let admin = if t.master_key.is_some() { "admin API on" } else { "no master key" };
                    format!("tenancy on: {db}, {admin}")
                },
            );
            println!(
                "{}: ok ({} backend{}, {} deployment{}, {tenancy})",
                file.display(),
                c.backends.len(),
                plural(c.backends.len()),
                c.deployments.len(),
                plural(c.deployments.len())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn serve(config: Option<PathBuf>, listen: Option<String>) -> ExitCode {
    let cfg = match config::load(config.as_deref(), listen.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    // Flushes the log lines still queued when serve returns.
    let _log_guard = init_logs(&cfg.log);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let scheduler = match rt.handle().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
        _ => "multi_thread",
    };
    tracing::info!(scheduler, workers = rt.metrics().num_workers(), "runtime started");
    rt.block_on(async {
        // Live reconfiguration: SIGHUP, and a change of the file (docs/DEPLOY.md).
        let file = config.map(|path| ferrogate::reload::ConfigFile { path, listen });
        let clock = std::sync::Arc::new(ferrogate_core::tenancy::time::SystemClock);
        let resolver = std::sync::Arc::new(ferrogate::discovery::SystemResolver);
        match ferrogate::start_with(&cfg, ferrogate_server::shutdown_signal(), clock, file, resolver).await {
            Ok(running) => {
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("cannot start: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Logs go to stderr through a background writer thread (`logsink`): request tasks format their
/// line and append it to a buffer, never waiting on the write syscall (a slow pipe would stall a
/// tokio worker); the thread writes the buffer in batches. Not lossy: when the buffer is full the
/// caller waits rather than lines being dropped.
fn init_logs(log: &config::LogConfig) -> Option<logsink::FlushGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    match logsink::spawn(std::io::stderr()) {
        Ok((writer, guard)) => {
            install(filter, log.format, writer);
            Some(guard)
        }
        Err(e) => {
            eprintln!("cannot start the log writer thread ({e}); logging to stderr directly");
            install(filter, log.format, std::io::stderr);
            None
        }
    }
}

fn install<W>(filter: EnvFilter, format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => builder.event_format(logline::JsonLine).init(),
        LogFormat::Text => builder.init(),
    }
}
