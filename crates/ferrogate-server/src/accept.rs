//! The accept side: one hyper connection per TCP connection (HTTP/1.1, or HTTP/2 by its preface or
//! ALPN), driven with a timer, under a cap on open connections.
//!
//! Invariants: a connection that has not sent a complete first request head within
//! `header_read_timeout` of its accept is closed (HTTP/1 also gets hyper's header-read timer for
//! every later request); a connection with no request in flight for `idle_timeout` is shut down
//! gracefully (HTTP/2: GOAWAY); HTTP/2 peers are pinged and dropped when they stop answering;
//! beyond `max_connections` a new connection is answered `503 too_many_connections` and closed,
//! never queued. On `stop` the listener closes and every connection finishes its in-flight
//! requests; on `kill` what is left is dropped. With TLS (`[server.tls]`) the handshake is part
//! of the first-head deadline: a client that opens TCP and never completes it holds nothing past
//! `header_read_timeout`; one that speaks plain HTTP to the TLS port gets a plain 400 and a close.

mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::tls::Tls;

/// HTTP/2 keep-alive: a PING after this long without a frame from the peer…
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// …and the connection is closed if its answer takes longer than this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Refusals being written at once; beyond this a refused connection is closed without a word.
const MAX_REFUSALS: usize = 64;
/// A refusal's write (and the read of what the client sent meanwhile) ends after this.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after an accept error (EMFILE: no file descriptor left) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a listener on `addr` with a queue of `backlog` connections the kernel has completed
/// but the loop has not accepted yet (capped by `net.core.somaxconn`; `server.listen_backlog`).
/// Tokio's own `bind` asks for 1,024; a burst of connections larger than the queue while the
/// loop is behind has its newest handshakes dropped (a second later retried) or reset.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's and tokio's `bind` do: a restart may bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The accept side's bounds (`[server]`: `header_read_timeout_secs`, `idle_timeout_secs`,
/// `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

/// What every connection task shares.
struct Shared {
    /// HTTP/2, or a connection whose version is not known yet (hyper-util detects it).
    builder: Builder<TokioExecutor>,
    /// A connection known to speak HTTP/1 (`conn::serve` tells): hyper's own, configured alike.
    http1: hyper::server::conn::http1::Builder,
    limits: AcceptLimits,
    /// `[server.tls]`: every connection is a TLS one.
    tls: Option<Arc<Tls>>,
    /// Graceful: stop accepting; connections finish what is in flight.
    stop: CancellationToken,
    /// Hard: connections still open are dropped (the grace period is over).
    kill: CancellationToken,
}

/// The router in force: a configuration reload swaps it whole; each request takes the one in
/// force when it arrives and keeps it (with its `AppState` snapshot) to its end.
pub type Served = Arc<arc_swap::ArcSwap<Router>>;

/// Accepts on `listener` and serves `app` until `stop`, then waits for the connections to end
/// (or `kill`). The peer address reaches handlers as `ConnectInfo<SocketAddr>`; with `tls`,
/// [`crate::tls::PeerCert`] says whether the client's certificate verified.
pub async fn run(
    listener: TcpListener,
    app: Served,
    limits: AcceptLimits,
    tls: Option<Arc<Tls>>,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let shared = Arc::new(Shared { builder: builder(limits), http1: http1_builder(limits), limits, tls, stop, kill });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let refusal = Bytes::from(refusal_response());
    let conns = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shared.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // SSE writes many small frames: without TCP_NODELAY, Nagle + the client's delayed ACK
        // hold each second frame ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                conns.spawn(conn::serve(tcp, peer, Arc::clone(&app), Arc::clone(&shared), slot));
            }
            Err(_) => match Arc::clone(&refusals).try_acquire_owned() {
                Ok(permit) => {
                    conns.spawn(refuse(tcp, peer, refusal.clone(), permit));
                }
                Err(_) => drop(tcp),
            },
        }
    }
    drop(listener);
    conns.close();
    conns.wait().await;
}

/// One hyper-util builder for every connection: the timer drives HTTP/1's header-read timeout
/// and HTTP/2's keep-alive pings.
fn builder(limits: AcceptLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    b.http2().timer(TokioTimer::new()).keep_alive_interval(H2_PING_INTERVAL).keep_alive_timeout(H2_PING_TIMEOUT);
    b
}

/// The HTTP/1 half of [`builder`], for connections known to speak HTTP/1.
fn http1_builder(limits: AcceptLimits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    b
}

/// EMFILE/ENFILE and the like: the process is out of descriptors; back off instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Answers a connection over the cap with the canned 503 and closes it. What the client sent is
/// read and discarded for a moment, so the close is a FIN the client can read the answer before,
/// not a reset.
async fn refuse(mut tcp: TcpStream, peer: SocketAddr, answer: Bytes, _permit: tokio::sync::OwnedSemaphorePermit) {
    tracing::debug!(%peer, "connection refused: max_connections reached");
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// `HTTP/1.1 503` with the OpenAI-shaped `too_many_connections` error, `Connection: close`.
fn refusal_response() -> Vec<u8> {
    let err = ApiError::too_many_connections();
    let body = serde_json::to_string(&err.body()).unwrap_or_default();
    let retry = err.retry_after.map_or(1, |d| d.as_secs().max(1));
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nretry-after: {retry}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        err.status().as_u16(),
        err.status().canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// The listener asks the kernel for the configured backlog, not Tokio's 1,024: `ss` shows a
    /// listening socket's backlog as its Send-Q.
    #[tokio::test]
    async fn the_listener_has_the_configured_backlog() {
        for backlog in [77u32, 3000] {
            let listener = super::bind("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
            let port = listener.local_addr().unwrap().port();
            let out = std::process::Command::new("ss")
                .args(["-ltnH", &format!("sport = :{port}")])
                .output()
                .expect("ss (iproute2) runs");
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            let send_q: u32 = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()).expect(&line);
            let somaxconn: u32 =
                std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
            assert_eq!(send_q, backlog.min(somaxconn), "{line}");
        }
    }
}
