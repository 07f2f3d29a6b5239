//! Start-up and shutdown: open the key store (if tenancy is on), bind, background health checks
//! and key-change polling, serve, and on a signal drain — `/ready` turns 503, new requests get
//! 503 `shutting_down`, in-flight requests and streams get up to the grace period to finish —
//! then flush the usage ledger and stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accept::{self, AcceptLimits};
use crate::settings::Settings;
use crate::state::{AppState, Services};
use crate::tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", .0.join("\n"))]
    Build(Vec<String>),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    /// The separate `/metrics` listener's address, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The snapshot the server started with (see [`Running::live`] for the one in force).
    pub state: AppState,
    /// Live reconfiguration: applies a reloaded configuration to the running server.
    pub live: crate::live::Live,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Begins the graceful shutdown and waits until it is done.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }

    /// Waits for the server to end (after `signal` fired and draining finished).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Serves `services` as `cfg` says: binds, starts the background work (health checks, warm-up,
/// the gauge sampler, the key poller) and serves until `signal` resolves, then drains.
pub async fn start(
    cfg: &Settings,
    services: Services,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let st = AppState::new(cfg, services).map_err(StartError::Build)?;
    let listener = accept::bind(cfg.listen, cfg.server.listen_backlog)
        .map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let tls = listener_tls(cfg, &st)?;
    tracing::info!(%addr, tls = tls.is_some(), deployments = st.registry.deployments().len(), "ferrogate listening");
    crate::probes::spawn(&st, st.backends.clone());
    crate::warmup::spawn(&st);
    let metrics_addr = spawn_metrics_listener(&st, accept_limits(cfg)).await?;
    crate::sampler::spawn(&st);
    crate::jobs::spawn(&st).map_err(|e| StartError::Build(vec![e]))?;
    crate::handlers::conversations::spawn_purge(&st);
    if let Some(t) = &st.tenancy {
        t.spawn_background(&st.tasks, st.stopping.clone());
    }
    let (stop, stop_rx) = oneshot::channel();
    let signal = async move {
        tokio::select! {
            _ = signal => {}
            _ = stop_rx => {}
        }
    };
    let gate = tls
        .as_ref()
        .filter(|(_, gated)| *gated)
        .map(|_| crate::tls::gate::Gate { metrics: !st.obs.cfg.metrics.public });
    let live = crate::live::Live::new(st.clone(), gate);
    let task = tokio::spawn(serve(listener, st.clone(), live.served(), accept_limits(cfg), tls, signal));
    Ok(Running { addr, metrics_addr, state: st, live, stop: Some(stop), task })
}

/// The metrics listener's backlog: scrapers, not a crowd.
const METRICS_BACKLOG: u32 = 1024;

/// Serves `/metrics` alone on `metrics.listen` (same accept bounds), until draining starts.
async fn spawn_metrics_listener(st: &AppState, limits: AcceptLimits) -> Result<Option<SocketAddr>, StartError> {
    let Some(at) = st.obs.cfg.metrics_listen.filter(|_| st.obs.cfg.metrics.enabled) else { return Ok(None) };
    let listener = accept::bind(at, METRICS_BACKLOG).map_err(|source| StartError::Bind { addr: at, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: at, source })?;
    tracing::info!(%addr, "metrics listening");
    let (app, stop) = (crate::router::metrics_router(st.clone()), st.stopping.clone());
    let app = Arc::new(arc_swap::ArcSwap::from_pointee(app));
    st.tasks.spawn(accept::run(listener, app, limits, None, stop.clone(), stop));
    Ok(Some(addr))
}

/// `[server.tls]`: the listener's TLS, its certificate watched for changes until draining starts.
fn listener_tls(cfg: &Settings, st: &AppState) -> Result<Option<(Arc<Tls>, bool)>, StartError> {
    let Some(sec) = &cfg.server.tls else { return Ok(None) };
    let tls = Arc::new(crate::tls::build(sec).map_err(|e| StartError::Build(vec![e]))?);
    tls.spawn_reloader(Duration::from_secs(sec.reload_interval_secs.max(1)), &st.tasks, st.stopping.clone());
    Ok(Some((tls, sec.admin_requires_client_cert)))
}

/// The accept side's bounds from `[server]`.
fn accept_limits(cfg: &Settings) -> AcceptLimits {
    AcceptLimits {
        header_read: Duration::from_secs(cfg.server.header_read_timeout_secs),
        idle: Duration::from_secs(cfg.server.idle_timeout_secs),
        max_connections: cfg.server.max_connections,
    }
}

async fn serve(
    listener: TcpListener,
    st: AppState,
    app: accept::Served,
    limits: AcceptLimits,
    tls: Option<(Arc<Tls>, bool)>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let (close, kill) = (CancellationToken::new(), CancellationToken::new());
    let tls = tls.map(|(t, _)| t);
    let server = tokio::spawn(accept::run(listener, app, limits, tls, close.clone(), kill.clone()));
    signal.await;
    let deadline = Instant::now() + st.current().settings.shutdown_grace;
    st.start_draining();
    tracing::info!(
        inflight = st.inflight(),
        grace_secs = st.settings.shutdown_grace.as_secs(),
        "shutting down: draining"
    );
    while st.inflight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    close.cancel();
    st.tasks.close();
    let rest = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(200);
    let mut server = server;
    if tokio::time::timeout(rest, async {
        let _ = (&mut server).await;
        st.tasks.wait().await;
    })
    .await
    .is_err()
    {
        tracing::warn!(inflight = st.inflight(), "grace period over: closing remaining connections");
        kill.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut server).await;
    }
    // Every request has settled (or the grace period is over): write the usage rows still queued.
    let st = st.current();
    engines_idle(&st, ENGINE_IDLE_WAIT).await;
    if let Some(t) = &st.tenancy {
        t.shutdown().await;
    }
    st.limits.shutdown().await;
    // And the spans still queued.
    st.obs.shutdown().await;
    tracing::info!("shutdown complete");
}

/// How long shutdown waits for the embedded engines to leave the step they are in.
const ENGINE_IDLE_WAIT: Duration = Duration::from_secs(10);

/// Waits until no embedded engine has work running or queued (a generation whose client left is
/// dropped at its engine's next step), at most `within`. The process must not exit while
/// llama.cpp is inside a decode: exiting runs its static destructors under the scheduler thread,
/// a SIGSEGV after an otherwise clean shutdown.
async fn engines_idle(st: &AppState, within: Duration) {
    let busy = || st.backends.iter().filter_map(|b| b.stats()).any(|s| s.slots_busy + s.queue_depth > 0);
    let deadline = Instant::now() + within;
    while busy() {
        if Instant::now() >= deadline {
            tracing::warn!(waited_secs = within.as_secs(), "an embedded engine is still busy: exiting anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
