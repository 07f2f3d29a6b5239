//! One accepted connection: its hyper connection future, raced against the first-head and idle
//! deadlines, the graceful stop and the hard kill. Requests in flight are counted by a guard that
//! lives in the response body, so a stream counts until its last frame is written.
//!
//! A connection known to speak HTTP/1 — its first bytes, peeked, are not HTTP/2's preface, or
//! TLS negotiated `http/1.1` — is served by hyper's HTTP/1 connection directly; only the others
//! (HTTP/2, or not yet known) go through hyper-util's version-detecting one. That one reads the
//! first bytes itself and hands them back through a rewinding reader, which makes hyper's read
//! buffer grow to 16 KB at the first request, and its future is sized for HTTP/2's state: with
//! thousands of open streams, both showed as the two largest costs per connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{AcceptLimits, Served, Shared};
use crate::tls::PeerCert;

/// Serves one connection until it ends, is found idle, or the server stops. `_slot` is its place
/// under `max_connections`, given back when this returns. With TLS the handshake comes first,
/// bounded by what is left of the first-head deadline.
pub(super) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Served,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let Some(tls) = shared.tls.clone() else {
        let sniffed = before_first_head(&shared, &activity, speaks_http1(&tcp));
        let Some(http1) = sniffed.await.map_err(|late| late.log(peer, "a complete request head")).ok().flatten() else {
            return;
        };
        return drive(tcp, peer, app, &shared, activity, None, http1).await;
    };
    // Boxed: the handshake and the TLS session would size every plain connection's task too.
    Box::pin(serve_tls(tcp, peer, app, &shared, activity, tls)).await;
}

/// A connection on the TLS listener: the handshake (bounded by the first-head deadline), then
/// the connection over the session.
async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Served,
    shared: &Shared,
    activity: Arc<Activity>,
    tls: Arc<crate::tls::Tls>,
) {
    let handshake = async {
        if !starts_with_tls_record(&tcp).await {
            plain_http_refused(tcp, peer).await;
            return None;
        }
        match tls.acceptor.accept(tcp).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
        }
    };
    let handshake = before_first_head(shared, &activity, handshake);
    let Some(stream) = handshake.await.map_err(|late| late.log(peer, "a TLS handshake")).ok().flatten() else {
        return;
    };
    let session = stream.get_ref().1;
    let verified = tls.verifies_clients && session.peer_certificates().is_some_and(|c| !c.is_empty());
    let http1 = session.alpn_protocol() == Some(b"http/1.1");
    drive(stream, peer, app, shared, activity, Some(PeerCert { verified }), http1).await;
}

/// What stopped [`before_first_head`]'s wait.
enum Late {
    /// The first-head deadline passed.
    Deadline,
    /// The server is stopping.
    Stopping,
}

impl Late {
    fn log(self, peer: SocketAddr, awaited: &str) {
        if let Late::Deadline = self {
            tracing::debug!(%peer, "connection closed: no {awaited} in time");
        }
    }
}

/// `work` (the protocol sniff or the TLS handshake), bounded by the first-head deadline and cut
/// short by the stop or the kill.
async fn before_first_head<T>(shared: &Shared, activity: &Activity, work: impl Future<Output = T>) -> Result<T, Late> {
    let deadline = activity.accepted + shared.limits.header_read;
    tokio::select! {
        done = tokio::time::timeout_at(deadline, work) => done.map_err(|_| Late::Deadline),
        _ = shared.stop.cancelled() => Err(Late::Stopping),
        _ = shared.kill.cancelled() => Err(Late::Stopping),
    }
}

/// HTTP/2's connection preface: a client that does not open with it speaks HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection certainly speaks HTTP/1: the bytes it sent first, peeked (left
/// for hyper to read), already differ from HTTP/2's preface. `Some(false)` when they could still
/// be the preface (hyper-util then tells); `None` when the peer closed without a byte. Waits for
/// the first bytes (the caller bounds the wait).
async fn speaks_http1(tcp: &TcpStream) -> Option<bool> {
    let mut first = [0u8; H2_PREFACE.len()];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(first.get(..n).is_some_and(|seen| !H2_PREFACE.starts_with(seen))),
    }
}

/// A TLS connection opens with a handshake record (content type 22); anything else is taken for
/// plain HTTP. Waits for the first byte (the caller bounds the wait).
async fn starts_with_tls_record(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Plain HTTP sent to the TLS port: a plain `400` that says so, then close.
async fn plain_http_refused(mut tcp: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "plain HTTP on the TLS listener");
    const BODY: &str = "this port speaks HTTPS: the plain HTTP request was sent to a TLS listener\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The connection over `io` — hyper's HTTP/1 one when `http1`, else hyper-util's
/// version-detecting one — raced against the deadlines, the stop and the kill.
async fn drive<I>(
    io: I,
    peer: SocketAddr,
    app: Served,
    shared: &Shared,
    activity: Arc<Activity>,
    cert: Option<PeerCert>,
    http1: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let activity = Arc::clone(&activity);
        service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            if let Some(c) = cert {
                req.extensions_mut().insert(c);
            }
            let guard = InFlight::start(&activity);
            // The router (and configuration snapshot) in force now, kept to the request's end.
            let app = Router::clone(&app.load());
            async move {
                let res = app.oneshot(req.map(Body::new)).await;
                res.map(|r| r.map(|inner| Tracked { inner, _guard: guard }))
            }
        })
    };
    if http1 {
        let conn = std::pin::pin!(shared.http1.serve_connection(TokioIo::new(io), svc));
        return race(conn, |c| c.graceful_shutdown(), peer, shared, &activity).await;
    }
    // Boxed: this future is sized for HTTP/2, and every HTTP/1 connection's task would be too.
    Box::pin(async {
        let conn = std::pin::pin!(shared.builder.serve_connection(TokioIo::new(io), svc));
        race(conn, |c| c.graceful_shutdown(), peer, shared, &activity).await;
    })
    .await;
}

/// Drives `conn` to its end, raced against the deadlines, the stop and the kill; `graceful`
/// asks it to finish what is in flight and close.
///
/// The three are one [`control`] future kept in a `FuturesUnordered`, which polls it only when
/// one of them woke it: the connection's task is woken for every request (its socket, its
/// upstream's answer), and polling the two cancellation tokens and the timer each time was
/// ~1,600 instructions per request (`make bench-instructions`).
async fn race<C, E>(
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    peer: SocketAddr,
    shared: &Shared,
    activity: &Activity,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut watch = FuturesUnordered::new();
    watch.push(control(shared, activity, false));
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            Some(event) = watch.next() => match event {
                Control::Kill => return,
                Control::Expired(Expiry::FirstHead) => {
                    tracing::debug!(%peer, "connection closed: no complete request head in time");
                    return;
                }
                Control::Stop | Control::Expired(Expiry::Idle) => {
                    graceful(conn.as_mut());
                    // Closing: only the kill is watched from now on.
                    watch.push(control(shared, activity, true));
                }
            },
        }
    }
}

/// What ends or winds down a connection from outside it.
enum Control {
    /// The hard kill: dropped at once.
    Kill,
    /// The graceful stop.
    Stop,
    /// A deadline of [`Activity`] passed.
    Expired(Expiry),
}

/// The first of the kill, the stop and the connection's deadline (only the kill once `closing`).
async fn control(shared: &Shared, activity: &Activity, closing: bool) -> Control {
    tokio::select! {
        _ = shared.kill.cancelled() => Control::Kill,
        _ = shared.stop.cancelled(), if !closing => Control::Stop,
        why = activity.expired(shared.limits), if !closing => Control::Expired(why),
    }
}

/// Why a connection's deadline passed.
enum Expiry {
    /// No complete request head within `header_read_timeout` of the accept: dropped at once
    /// (hyper's own header timer covers the later requests of an HTTP/1 connection).
    FirstHead,
    /// No request in flight for `idle_timeout`: shut down gracefully.
    Idle,
}

/// What the deadlines read: requests in flight, whether one ever came, and since when idle.
///
/// Requests only note their start and end here (atomics, no wake-up); the deadline is looked at
/// when its one timer fires ([`Activity::expired`]), so a kept-alive connection serving request
/// after request costs no timer and no extra poll of its task per request.
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// Milliseconds after `accepted` when the last request finished.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// The deadline now in force, if any (none while a request is in flight).
    fn deadline(&self, limits: AcceptLimits) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Acquire) {
            return Some((self.accepted + limits.header_read, Expiry::FirstHead));
        }
        let idle_since = self.accepted + std::time::Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some((idle_since + limits.idle, Expiry::Idle))
    }

    /// When to look again, or the deadline that passed. The deadline in force, if nothing
    /// changes — but never later than `idle` from `now`: a request that starts after `now` and
    /// ends moves the deadline to its end plus `idle`, which is no earlier than that. So the
    /// timer never fires after a deadline, and fires early only to find a later one.
    fn next_look(&self, limits: AcceptLimits, now: Instant) -> Result<Instant, Expiry> {
        match self.deadline(limits) {
            Some((at, why)) if now >= at => Err(why),
            Some((at, _)) => Ok(at.min(now + limits.idle)),
            None => Ok(now + limits.idle),
        }
    }

    /// Resolves when the deadline in force passes.
    async fn expired(&self, limits: AcceptLimits) -> Expiry {
        let first = match self.next_look(limits, Instant::now()) {
            Ok(at) => at,
            Err(why) => return why,
        };
        let mut timer = std::pin::pin!(tokio::time::sleep_until(first));
        loop {
            timer.as_mut().await;
            match self.next_look(limits, Instant::now()) {
                Ok(at) => timer.as_mut().reset(at),
                Err(why) => return why,
            }
        }
    }
}

/// A request in flight on its connection; dropped with the response body (or with the request
/// if it never got one).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let since = u64::try_from(a.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(since, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
