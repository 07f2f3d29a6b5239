//! Start-up and shutdown: open the key store (if tenancy is on), bind, background health checks
//! and key-change polling, serve, and on a signal drain — `/ready` turns 503, new requests get
//! 503 `shutting_down`, in-flight requests and streams get up to the grace period to finish —
//! then flush the usage ledger and stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::Health;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accept::{self, AcceptLimits};
use crate::settings::Settings;
use crate::state::{AppState, Services};
use crate::tls::Tls;

/// Bound of one health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Probe interval while some backend is not healthy yet (model loading): `/ready` turns quickly.
const FAST_PROBE: Duration = Duration::from_millis(250);

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
    pub state: AppState,
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
    let listener =
        TcpListener::bind(cfg.listen).await.map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let tls = listener_tls(cfg, &st)?;
    tracing::info!(%addr, tls = tls.is_some(), deployments = st.registry.deployments().len(), "ferrogate listening");
    spawn_health_checks(&st);
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
    let task = tokio::spawn(serve(listener, st.clone(), accept_limits(cfg), tls, signal));
    Ok(Running { addr, metrics_addr, state: st, stop: Some(stop), task })
}

/// Serves `/metrics` alone on `metrics.listen` (same accept bounds), until draining starts.
async fn spawn_metrics_listener(st: &AppState, limits: AcceptLimits) -> Result<Option<SocketAddr>, StartError> {
    let Some(at) = st.obs.cfg.metrics_listen.filter(|_| st.obs.cfg.metrics.enabled) else { return Ok(None) };
    let listener = TcpListener::bind(at).await.map_err(|source| StartError::Bind { addr: at, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: at, source })?;
    tracing::info!(%addr, "metrics listening");
    let (app, stop) = (crate::router::metrics_router(st.clone()), st.stopping.clone());
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
    limits: AcceptLimits,
    tls: Option<(Arc<Tls>, bool)>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let mut app = crate::router::router(st.clone());
    if let Some((_, true)) = &tls {
        app = crate::tls::gate::wrap(app, crate::tls::gate::Gate { metrics: !st.obs.cfg.metrics.public });
    }
    let (close, kill) = (CancellationToken::new(), CancellationToken::new());
    let tls = tls.map(|(t, _)| t);
    let server = tokio::spawn(accept::run(listener, app, limits, tls, close.clone(), kill.clone()));
    signal.await;
    let deadline = Instant::now() + st.settings.shutdown_grace;
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
    if let Some(t) = &st.tenancy {
        t.shutdown().await;
    }
    st.limits.shutdown().await;
    // And the spans still queued.
    st.obs.shutdown().await;
    tracing::info!("shutdown complete");
}

/// One active health-check loop per backend, so a slow or hanging probe of one backend never
/// delays another's: every `health_check_interval_secs`, or every 250 ms while the backend is
/// not healthy (model loading, down) so `/ready` and routing follow it quickly. Results feed
/// `/ready`, the balancer (unhealthy targets are avoided) and the deployment's concurrency
/// (an engine reports its slots once loaded).
fn spawn_health_checks(st: &AppState) {
    for b in st.backends.iter().map(Arc::clone) {
        let st2 = st.clone();
        st.tasks.spawn(async move {
            loop {
                let h = tokio::time::timeout(PROBE_TIMEOUT, b.health())
                    .await
                    .unwrap_or_else(|_| Health::Unhealthy("health check timed out".into()));
                if h != st2.health_of(b.name()) {
                    tracing::info!(
                        backend = b.name(),
                        health = h.label(),
                        reason = h.reason(),
                        "backend health changed"
                    );
                }
                let wait = if h.is_healthy() { st2.settings.health_interval } else { FAST_PROBE };
                st2.set_health(b.name(), h);
                tokio::select! {
                    _ = st2.stopping.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
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
