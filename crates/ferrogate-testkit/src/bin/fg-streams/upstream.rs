//! The slow-dripping upstream: `POST /v1/chat/completions` with `stream: true` answers FRAMES
//! content chunks, the first at once and then one per interval, then (one interval later) the
//! finish chunk, a usage chunk and `data: [DONE]`; without `stream` it answers the whole
//! completion; `GET /v1/models` is the readiness probe.
//!
//! Speaks HTTP/1.1, and HTTP/2 to a client that opens with its preface (prior knowledge), with
//! no cap on the streams of one connection.
//!
//! Invariant: a stream costs one task (its connection's, or its HTTP/2 stream's) and one timer; the frames are shared `Bytes`,
//! never formatted per stream, so the upstream is not what limits the run.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::interval;

#[derive(clap::Args)]
pub struct UpstreamArgs {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Content chunks per stream.
    #[arg(long, default_value_t = 50)]
    frames: u32,
    /// Pause between chunks, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What every stream sends: shared by all connections.
struct Drip {
    frames: u32,
    interval: Duration,
    chunk: Bytes,
    tail: Bytes,
    completion: Bytes,
}

const CHUNK: &str = concat!(
    r#"data: {"id":"chatcmpl-fg","object":"chat.completion.chunk","created":1,"model":"m","#,
    r#""choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#,
    "\n\n"
);
const MODELS: &str = r#"{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"fg-streams"}]}"#;

pub async fn run(args: UpstreamArgs) -> anyhow::Result<()> {
    let listener = listen(SocketAddr::new(args.host, args.port))?;
    let drip = Arc::new(Drip::new(args.frames, Duration::from_millis(args.interval_ms)));
    // HTTP/1.1, or HTTP/2 for a prior-knowledge client, with no cap on the streams of one
    // connection (hyper's default is 200): a gateway may carry every stream over one.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(None);
    let builder = Arc::new(builder);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // EMFILE and friends: keep serving the streams already open.
                eprintln!("fg-streams upstream: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let drip = Arc::clone(&drip);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, Arc::clone(&drip)));
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

/// A listener with a deep accept queue (the kernel caps it at `net.core.somaxconn`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

async fn answer(req: Request<Incoming>, drip: Arc<Drip>) -> Result<Response<Body>, hyper::Error> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/v1/models") => Ok(whole(StatusCode::OK, Bytes::from_static(MODELS.as_bytes()))),
        (&Method::POST, "/v1/chat/completions") => {
            let body = req.into_body().collect().await?.to_bytes();
            Ok(if wants_stream(&body) { drip.stream() } else { whole(StatusCode::OK, drip.completion.clone()) })
        }
        _ => Ok(whole(StatusCode::NOT_FOUND, Bytes::from_static(br#"{"error":{"message":"not found"}}"#))),
    }
}

fn wants_stream(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("stream")?.as_bool()).unwrap_or(false)
}

fn whole(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

// === impl Drip ===

impl Drip {
    fn new(frames: u32, interval: Duration) -> Self {
        let usage =
            format!(r#""usage":{{"prompt_tokens":5,"completion_tokens":{frames},"total_tokens":{}}}"#, frames + 5);
        let tail = format!(
            "data: {{\"id\":\"chatcmpl-fg\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\
             \"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
             data: {{\"id\":\"chatcmpl-fg\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\
             \"choices\":[],{usage}}}\n\ndata: [DONE]\n\n"
        );
        let completion = format!(
            "{{\"id\":\"chatcmpl-fg\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{{\
             \"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"tok\"}},\"finish_reason\":\"stop\"}}],{usage}}}"
        );
        Drip {
            frames,
            interval,
            chunk: Bytes::from_static(CHUNK.as_bytes()),
            tail: Bytes::from(tail),
            completion: Bytes::from(completion),
        }
    }

    /// The SSE response: frame `i` is due at `i × interval` after the request (a late tick sends
    /// what is due at once, like a model whose tokens queued up).
    fn stream(self: Arc<Self>) -> Response<Body> {
        let frames = stream::unfold((interval(self.interval), 0u32, self), |(mut tick, sent, drip)| async move {
            if sent > drip.frames {
                return None;
            }
            tick.tick().await;
            let bytes = if sent < drip.frames { drip.chunk.clone() } else { drip.tail.clone() };
            Some((Ok::<_, Infallible>(Frame::data(bytes)), (tick, sent + 1, drip)))
        });
        let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
        resp
    }
}
