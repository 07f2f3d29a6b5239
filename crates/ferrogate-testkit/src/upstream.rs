//! A fault-injecting fake HTTP upstream on `127.0.0.1:0`, speaking the OpenAI API by default
//! (the Ollama flavour is in [`crate::ollama`]).
//!
//! Each path answers with a scripted [`Reply`]: whole JSON, a stream of frames with delays and
//! byte-level splits that may die or stall mid-way, a stall before any byte, or a connection
//! closed without a response. The fake records every request (method, path, headers, body) and
//! notices when a client goes away before its reply finished, so tests synchronize on
//! notifications ([`FakeUpstream::wait_for_requests`], [`FakeUpstream::wait_for_disconnects`],
//! [`FakeUpstream::wait_for_streams_sent`])
//! instead of sleeps.
//!
//! Invariant: the server and all its connections stop when the `FakeUpstream` is dropped.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::Bytes;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The HTTP version the request came over (HTTP/1.1, or HTTP/2 from a prior-knowledge client).
    pub version: axum::http::Version,
}

impl Recorded {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the JSON body asks for a stream (`stream: true`, or `default` when absent).
    pub fn wants_stream(&self, default: bool) -> bool {
        self.json().get("stream").and_then(Value::as_bool).unwrap_or(default)
    }
}

/// What the fake answers to one request.
#[derive(Clone)]
pub enum Reply {
    /// A whole response.
    Full { status: u16, headers: Vec<(String, String)>, body: Bytes },
    /// A streamed response, frame by frame.
    Stream(StreamReply),
    /// Never answers: no status line, no byte, until the client gives up.
    Stall,
    /// Closes the connection without writing a response.
    Close,
    /// Chooses the reply from the request (e.g. by its `stream` flag).
    Dynamic(Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>),
    /// The inner reply after a pause (a slow upstream).
    Delayed(Duration, Box<Reply>),
}

/// How a streamed response ends after its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The body ends properly.
    Complete,
    /// The connection is dropped mid-body (no terminating chunk).
    Abort,
    /// Nothing more is ever sent; the connection stays open.
    Stall,
}

/// A streamed 200 response.
#[derive(Debug, Clone)]
pub struct StreamReply {
    pub content_type: String,
    pub frames: Vec<Bytes>,
    /// Pause before each frame but the first.
    pub delay: Duration,
    /// Write each frame in pieces of this many bytes (1 = every byte its own write).
    pub split: Option<usize>,
    pub end: StreamEnd,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from(body.into()),
        }
    }

    pub fn dynamic(f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Reply {
        Reply::Dynamic(Arc::new(f))
    }

    /// This reply, sent after `pause`.
    pub fn after(self, pause: Duration) -> Reply {
        Reply::Delayed(pause, Box::new(self))
    }

    /// Adds a header to a `Full` reply (other replies are returned unchanged).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

impl StreamReply {
    pub fn new(content_type: &str, frames: Vec<Bytes>) -> Self {
        Self {
            content_type: content_type.to_owned(),
            frames,
            delay: Duration::ZERO,
            split: None,
            end: StreamEnd::Complete,
        }
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Writes every frame in `n`-byte pieces.
    pub fn split(mut self, n: usize) -> Self {
        self.split = Some(n.max(1));
        self
    }

    /// Sends the first `k` frames, then drops the connection.
    pub fn die_after(mut self, k: usize) -> Self {
        self.frames.truncate(k);
        self.end = StreamEnd::Abort;
        self
    }

    /// Sends the first `k` frames, then goes silent.
    pub fn stall_after(mut self, k: usize) -> Self {
        self.frames.truncate(k);
        self.end = StreamEnd::Stall;
        self
    }
}

impl From<StreamReply> for Reply {
    fn from(s: StreamReply) -> Reply {
        Reply::Stream(s)
    }
}

// === the server ===

#[derive(Default)]
struct Route {
    queue: VecDeque<Reply>,
    default: Option<Reply>,
}

struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    recorded: Mutex<Vec<Recorded>>,
    requests: watch::Sender<usize>,
    disconnects: watch::Sender<usize>,
    /// Streamed replies whose every frame was handed to the connection.
    streams_sent: watch::Sender<usize>,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn reply_for(&self, path: &str) -> Reply {
        let mut routes = lock(&self.routes);
        let route = routes.entry(path.to_owned()).or_default();
        route.queue.pop_front().or_else(|| route.default.clone()).unwrap_or_else(|| {
            Reply::json(
                404,
                &json!({"error": {"message": format!("no route {path}"), "type": "invalid_request_error"}}),
            )
        })
    }

    fn record(&self, r: Recorded) {
        lock(&self.recorded).push(r);
        self.requests.send_modify(|n| *n += 1);
    }
}

/// Counts a reply the client abandoned: dropped before `complete` (the connection went away).
struct DisconnectGuard {
    shared: Arc<Shared>,
    completed: bool,
}

impl DisconnectGuard {
    fn complete(&mut self) {
        self.completed = true;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared.disconnects.send_modify(|n| *n += 1);
        }
    }
}

/// Counts an open connection while alive.
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug)]
struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed on purpose")
    }
}

impl std::error::Error for CloseConnection {}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running fake upstream. See the module docs.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: AbortOnDrop,
}

impl FakeUpstream {
    /// A fake with no routes (every path answers 404) on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// A fake with no routes on `addr` (e.g. `127.0.0.2:0`, or a port another fake has on a
    /// different loopback address: every `127.0.0.x` is loopback on Linux).
    pub async fn start_on(addr: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            recorded: Mutex::new(Vec::new()),
            requests: watch::Sender::new(0),
            disconnects: watch::Sender::new(0),
            streams_sent: watch::Sender::new(0),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Ok(Self { addr, shared, _server: AbortOnDrop(server) })
    }

    /// An OpenAI-compatible fake: `/v1/chat/completions` and `/v1/completions` answer
    /// "Hello, world!" (streamed as four chunks when the request says `stream: true`, with
    /// usage 5 + 4), `/v1/models` lists `fake-model`. Base URL: `url("/v1")`.
    pub async fn openai() -> anyhow::Result<Self> {
        let fake = Self::start().await?;
        fake.on("/v1/chat/completions", Reply::dynamic(|r| default_reply(r, true)));
        fake.on("/v1/completions", Reply::dynamic(|r| default_reply(r, false)));
        fake.on("/v1/models", models_json(&["fake-model"]));
        Ok(fake)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sets the reply `path` gives from now on.
    pub fn on(&self, path: &str, reply: impl Into<Reply>) {
        lock(&self.shared.routes).entry(path.to_owned()).or_default().default = Some(reply.into());
    }

    /// Queues a reply for the next request to `path` only (before the standing one).
    pub fn push(&self, path: &str, reply: impl Into<Reply>) {
        lock(&self.shared.routes).entry(path.to_owned()).or_default().queue.push_back(reply.into());
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    /// The last request to `path`.
    pub fn last_request(&self, path: &str) -> Option<Recorded> {
        lock(&self.shared.recorded).iter().rev().find(|r| r.path == path).cloned()
    }

    /// Waits until `n` requests have arrived in all; false if `within` passed first.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> bool {
        wait_for(&self.shared.requests, n, within).await
    }

    /// Waits until `n` replies were abandoned by their client (connection closed before the
    /// reply finished); false if `within` passed first.
    pub async fn wait_for_disconnects(&self, n: usize, within: Duration) -> bool {
        wait_for(&self.shared.disconnects, n, within).await
    }

    /// Waits until `n` streamed replies have handed their last frame to the connection (sent,
    /// or queued for the socket); false if `within` passed first.
    pub async fn wait_for_streams_sent(&self, n: usize, within: Duration) -> bool {
        wait_for(&self.shared.streams_sent, n, within).await
    }

    /// Replies abandoned by their client so far.
    pub fn disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// TCP connections accepted so far (keep-alive reuse keeps this low).
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// TCP connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }
}

async fn wait_for(counter: &watch::Sender<usize>, n: usize, within: Duration) -> bool {
    let mut rx = counter.subscribe();
    matches!(tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await, Ok(Ok(_)))
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        shared.open.fetch_add(1, Ordering::Relaxed);
        let guard = ConnectionGuard(Arc::clone(&shared));
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let _guard = guard;
            let svc = service_fn(move |req| handle(Arc::clone(&shared), req));
            // HTTP/1.1, or HTTP/2 when the client opens with its preface (prior knowledge).
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(shared: Arc<Shared>, req: hyper::Request<Incoming>) -> Result<Response<Body>, CloseConnection> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(Body::new(body), usize::MAX).await.unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
        version: parts.version,
    };
    let mut reply = shared.reply_for(&rec.path);
    loop {
        match reply {
            Reply::Dynamic(f) => reply = f(&rec),
            Reply::Delayed(pause, inner) => {
                tokio::time::sleep(pause).await;
                reply = *inner;
            }
            other => {
                reply = other;
                break;
            }
        }
    }
    shared.record(rec);
    let mut guard = DisconnectGuard { shared, completed: false };
    match reply {
        Reply::Full { status, headers, body } => {
            guard.complete();
            Ok(full_response(status, &headers, body))
        }
        Reply::Stream(s) => Ok(stream_response(s, guard)),
        Reply::Stall => {
            let never: Infallible = futures::future::pending().await;
            match never {}
        }
        // `Dynamic` and `Delayed` were resolved above; treat a leftover like `Close`.
        Reply::Close | Reply::Dynamic(_) | Reply::Delayed(..) => {
            guard.complete();
            Err(CloseConnection)
        }
    }
}

fn full_response(status: u16, headers: &[(String, String)], body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// One write of a streamed body: wait `pause` first (zero still yields, so writes stay apart).
struct Piece {
    pause: Duration,
    bytes: Bytes,
}

fn pieces(s: &StreamReply) -> VecDeque<Piece> {
    let mut out = VecDeque::new();
    for (i, frame) in s.frames.iter().enumerate() {
        let step = s.split.unwrap_or(frame.len().max(1));
        for (j, start) in (0..frame.len()).step_by(step).enumerate() {
            let pause = if i > 0 && j == 0 { s.delay } else { Duration::ZERO };
            out.push_back(Piece { pause, bytes: frame.slice(start..frame.len().min(start + step)) });
        }
    }
    out
}

fn stream_response(s: StreamReply, guard: DisconnectGuard) -> Response<Body> {
    let state = (pieces(&s), s.end, guard);
    let body = futures::stream::unfold(state, |(mut pieces, end, mut guard)| async move {
        if let Some(p) = pieces.pop_front() {
            if p.pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(p.pause).await;
            }
            return Some((Ok(p.bytes), (pieces, end, guard)));
        }
        match end {
            StreamEnd::Complete => {
                guard.complete();
                guard.shared.streams_sent.send_modify(|n| *n += 1);
                None
            }
            StreamEnd::Abort => {
                // Let hyper flush the frames already yielded, or the abort would discard them.
                tokio::task::yield_now().await;
                guard.complete();
                Some((
                    Err(std::io::Error::other("fake upstream drops the connection")),
                    (pieces, StreamEnd::Complete, guard),
                ))
            }
            StreamEnd::Stall => {
                let never: Infallible = futures::future::pending().await;
                match never {}
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body.boxed()));
    if let Ok(ct) = HeaderValue::from_str(&s.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

// === OpenAI replies ===

/// Usage the default replies report: 5 prompt + 4 completion tokens.
pub const DEFAULT_USAGE: (u32, u32) = (5, 4);
/// The default answer, and its pieces when streamed.
pub const DEFAULT_TEXT: &str = "Hello, world!";
pub const DEFAULT_PIECES: [&str; 4] = ["Hello", ",", " world", "!"];

fn default_reply(r: &Recorded, chat: bool) -> Reply {
    let usage = Some(DEFAULT_USAGE);
    match (r.wants_stream(false), chat) {
        (true, true) => chat_sse(&DEFAULT_PIECES, usage).into(),
        (true, false) => completion_sse(&DEFAULT_PIECES, usage).into(),
        (false, true) => chat_json(DEFAULT_TEXT, usage),
        (false, false) => completion_json(DEFAULT_TEXT, usage),
    }
}

fn usage_json(usage: Option<(u32, u32)>) -> Value {
    usage.map_or(Value::Null, |(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}))
}

/// A `chat.completion` answer; `usage: None` leaves the field out.
pub fn chat_json(text: &str, usage: Option<(u32, u32)>) -> Reply {
    let mut v = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    });
    if usage.is_some() {
        v["usage"] = usage_json(usage);
    }
    Reply::json(200, &v)
}

/// A `text_completion` answer.
pub fn completion_json(text: &str, usage: Option<(u32, u32)>) -> Reply {
    let mut v = json!({
        "id": "cmpl-fake", "object": "text_completion", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
    });
    if usage.is_some() {
        v["usage"] = usage_json(usage);
    }
    Reply::json(200, &v)
}

/// `data: <json>\n\n`
pub fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// `data: [DONE]\n\n`
pub fn sse_done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

fn chat_chunk(delta: Value, finish: Option<&str>) -> Bytes {
    sse(&json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }))
}

/// An OpenAI chat stream: a role chunk, one chunk per piece, a finish chunk, a usage chunk
/// (when `usage` is given) and `[DONE]`. Frames: `pieces.len() + 3 (+1 with usage)`.
pub fn chat_sse(pieces: &[&str], usage: Option<(u32, u32)>) -> StreamReply {
    let mut frames = vec![chat_chunk(json!({"role": "assistant", "content": ""}), None)];
    frames.extend(pieces.iter().map(|p| chat_chunk(json!({"content": p}), None)));
    frames.push(chat_chunk(json!({}), Some("stop")));
    if usage.is_some() {
        frames.push(sse(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake-model", "choices": [], "usage": usage_json(usage)})));
    }
    frames.push(sse_done());
    StreamReply::new("text/event-stream", frames)
}

/// A legacy completions stream: one chunk per piece, a finish chunk, usage, `[DONE]`.
pub fn completion_sse(pieces: &[&str], usage: Option<(u32, u32)>) -> StreamReply {
    let chunk = |text: &str, finish: Option<&str>| {
        sse(
            &json!({"id": "cmpl-fake", "object": "text_completion", "created": 1, "model": "fake-model", "choices": [{"index": 0, "text": text, "finish_reason": finish}]}),
        )
    };
    let mut frames: Vec<Bytes> = pieces.iter().map(|p| chunk(p, None)).collect();
    frames.push(chunk("", Some("stop")));
    if usage.is_some() {
        frames.push(sse(&json!({"id": "cmpl-fake", "object": "text_completion", "created": 1, "model": "fake-model", "choices": [], "usage": usage_json(usage)})));
    }
    frames.push(sse_done());
    StreamReply::new("text/event-stream", frames)
}

/// `GET /models`.
pub fn models_json(ids: &[&str]) -> Reply {
    let data: Vec<Value> =
        ids.iter().map(|id| json!({"id": id, "object": "model", "created": 1, "owned_by": "fake"})).collect();
    Reply::json(200, &json!({"object": "list", "data": data}))
}

/// An HTTP error with an OpenAI error body.
pub fn openai_error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}))
}

/// 429 with `Retry-After: <secs>` and an OpenAI error body.
pub fn rate_limited(retry_after_secs: u64) -> Reply {
    Reply::json(429, &json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}))
        .with_header("retry-after", &retry_after_secs.to_string())
}

/// A 200 whose body is not JSON.
pub fn garbage() -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(b"{\"choices\": [tru"),
    }
}

/// An SSE stream whose second event is not JSON.
pub fn garbage_sse() -> StreamReply {
    let first = chat_chunk(json!({"content": "ok"}), None);
    StreamReply::new("text/event-stream", vec![first, Bytes::from_static(b"data: {not json\n\n"), sse_done()])
}

/// An SSE stream that reports an OpenAI-shaped error after one content chunk.
pub fn error_event_sse(message: &str) -> StreamReply {
    let first = chat_chunk(json!({"content": "partial"}), None);
    let err = sse(&json!({"error": {"message": message, "type": "server_error", "code": null}}));
    StreamReply::new("text/event-stream", vec![first, err, sse_done()])
}

// === tool calls ===

/// One tool call a fake upstream answers with: its id, function name, and the arguments' JSON
/// text as the fragments a stream sends them in (joined for a whole answer).
#[derive(Debug, Clone, Copy)]
pub struct FakeCall<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub fragments: &'a [&'a str],
}

/// A `chat.completion` whose message holds `calls` (content `null`, `finish_reason:
/// "tool_calls"`), with usage.
pub fn tool_calls_json(calls: &[FakeCall<'_>], usage: (u32, u32)) -> Reply {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.fragments.concat()}}))
        .collect();
    Reply::json(
        200,
        &json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": tool_calls},
                         "finish_reason": "tool_calls"}],
            "usage": usage_json(Some(usage)),
        }),
    )
}

/// An OpenAI chat stream of tool-call deltas as real servers send them: a role chunk, optional
/// text `pieces`, then per call a first delta with `index`, `id`, `type` and the name (empty
/// arguments) and one delta per argument fragment carrying only `index`; a `tool_calls` finish
/// chunk, a usage chunk and `[DONE]`.
pub fn tool_calls_sse(pieces: &[&str], calls: &[FakeCall<'_>], usage: (u32, u32)) -> StreamReply {
    let mut frames = vec![chat_chunk(json!({"role": "assistant", "content": ""}), None)];
    frames.extend(pieces.iter().map(|p| chat_chunk(json!({"content": p}), None)));
    for (i, c) in calls.iter().enumerate() {
        let first =
            json!([{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]);
        frames.push(chat_chunk(json!({"tool_calls": first}), None));
        for f in c.fragments {
            frames.push(chat_chunk(json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}), None));
        }
    }
    frames.push(chat_chunk(json!({}), Some("tool_calls")));
    frames.push(sse(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake-model", "choices": [], "usage": usage_json(Some(usage))})));
    frames.push(sse_done());
    StreamReply::new("text/event-stream", frames)
}
