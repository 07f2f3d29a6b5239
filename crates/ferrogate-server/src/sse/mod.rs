//! Streaming responses: backend events moved to the client as they arrive, through a front
//! protocol's [`Frames`] — OpenAI's SSE chunks ([`openai`]), Anthropic's Messages events
//! ([`anthropic`]) or Ollama's NDJSON lines ([`ndjson`]). The stream is its response body
//! ([`Rest`]): hyper polls it as the client takes frames, and each poll renders the events the
//! backend has sent — no task or channel between the backend and the connection.
//!
//! Invariants, whatever the framing: the first frame is sent only after the backend produced its
//! first event, so errors before it get a real status; what the backend has already sent goes
//! out with the response head, and an answer that is already whole is answered with no stream
//! state at all; after it, a failure ends the stream with the protocol's error frame (OpenAI
//! `data: {"error":…}` + `[DONE]`, Anthropic `event: error`, Ollama `{"error":…}`), never a
//! silent clean end; a client disconnect drops the body at once, which drops the backend stream
//! (cancelling upstream work) and settles the request; so does a client that stays connected but
//! reads nothing for `server.client_write_timeout_secs` (found by [`watch`], settled as
//! `client_stalled`).

pub mod anthropic;
pub mod ndjson;
pub mod openai;
pub mod responses;
pub(crate) mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrogate_core::chunk::RawChunk;
use ferrogate_core::{BackendError, EventStream, StreamEvent};
use ferrogate_protocol::openai::{FinishReason, Usage};
use futures::{FutureExt, StreamExt};
use http_body::Frame;
use serde_json::Value;
use tokio::time::Sleep;

pub use self::openai::Encoder;
use crate::error::ApiError;
use crate::handlers::decorate;
use crate::pipeline::{Answer, Body as Answered};
use crate::resilience::dispatch::Lease;
use crate::settle::Settle;
use crate::state::AppState;

/// The frames of one streamed answer in a front protocol's framing. The pump calls
/// [`opening`](Frames::opening) once, then [`delta`](Frames::delta) and
/// [`finish`](Frames::finish) as events arrive, and ends with [`close`](Frames::close) (normal
/// end) or [`fail`](Frames::fail) (a failure after the first byte).
pub trait Frames: Send + Sync + 'static {
    /// The response's content type.
    fn content_type(&self) -> &'static str;
    /// Frames before any content.
    fn opening(&mut self) -> Vec<Bytes>;
    /// Text and/or tool-call fragments (OpenAI-shaped) of one backend event.
    fn delta(&mut self, text: String, tool_calls: Option<Vec<Value>>) -> Vec<Bytes>;
    /// Log probabilities of the tokens of the next `delta` (OpenAI's `logprobs.content`
    /// entries); only OpenAI's chat framing carries them (other fronts cannot ask for them).
    fn logprobs(&mut self, _entries: Vec<Value>) {}
    /// The backend's finish reason.
    fn finish(&mut self, reason: FinishReason) -> Vec<Bytes>;
    /// The normal end, with the request's usage (the upstream's, or the gateway's estimate).
    fn close(&mut self, usage: Usage) -> Vec<Bytes>;
    /// A failure after the first byte: the protocol's error frame(s).
    fn fail(&mut self, e: &ApiError) -> Vec<Bytes>;
    /// What is sent after `server.keepalive_secs` without a frame, if the framing has one.
    fn keepalive(&self) -> Option<Bytes>;
    /// An upstream chunk passed through (SSE passthrough) as this framing's frame, or `None`
    /// when the framing re-frames: the pump then hands it over decoded, through `delta` and
    /// `finish` (the default, so a front of another protocol always gets decoded chunks).
    fn raw(&mut self, _chunk: &RawChunk) -> Option<Bytes> {
        None
    }
}

/// Streams an answer in OpenAI's framing.
pub fn respond(st: AppState, answer: Answer) -> Response {
    let (endpoint, include_usage) = (answer.endpoint, answer.include_usage);
    respond_with(st, answer, |settle, shown| Encoder::new(endpoint, &settle.request_id, shown, include_usage))
}

/// Events rendered into the response head at most: a long answer an upstream sent at once goes
/// out frame by frame as the client takes them.
const READY_EVENTS: usize = 64;

/// Streams an answer whose backend produced its first event (errors before it were answered
/// with a status by the pipeline) through the frames `make` builds from the request's `Settle`
/// and the model name shown. A whole answer is not expected here: it is a 500.
///
/// The opening frames, the first event and the events already decoded behind it (an upstream
/// that wrote several at once) are rendered here and sent with the response head. If that was
/// the whole stream, the answer is settled here; otherwise the body ([`Rest`]) renders the rest
/// as it arrives.
pub fn respond_with<F: Frames>(st: AppState, answer: Answer, make: impl FnOnce(&Settle, &str) -> F) -> Response {
    let Answer { shown, body, .. } = answer;
    let (first, mut events, lease, mut settle) = match body {
        Answered::Stream { first, events, lease, settle } => (first, events, lease, settle),
        Answered::Whole { .. } => {
            return ApiError::internal("a whole answer was sent to the stream encoder").into_response();
        }
    };
    settle.first_token = Some(Instant::now());
    let frames = make(&settle, &shown);
    let content_type = frames.content_type();
    let mut pump =
        Pump { frames, settle, write_timeout: st.settings.client_write_timeout, stalled: false, lease, finished: None };
    let mut ready = pump.frames.opening();
    pump.render(first, &mut ready);
    let ended = pump.render_ready(&mut events, &mut ready);
    let head = join(ready);
    let mut res = Response::new(Body::empty());
    decorate(&mut res, &shown, &pump.settle);
    if ended {
        *res.body_mut() = Body::from(head);
        // Finished or failed above; the record is written (access log, ledger, metrics) by the
        // drop, off the path of the response head.
        st.tasks.spawn(async move { drop(pump) });
    } else {
        *res.body_mut() = Body::new(Rest::new(&st, pump, events, head));
    }
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// Frames as one body chunk (one write with the head).
fn join(frames: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(frames) {
        Ok([one]) => one,
        Err(many) => Bytes::from(many.concat()),
    }
}

/// A streamed answer's state: its framing, its settle record and its lease. Events are rendered
/// into frames synchronously ([`Pump::render`]), with the response head or, after it, by the
/// body ([`Rest`]) as hyper asks for more.
struct Pump<F: Frames> {
    frames: F,
    settle: Settle,
    /// Longest a frame may wait for the client to take it (see [`watch`]).
    write_timeout: Duration,
    /// Set when the client stopped reading: settled as `client_stalled` when dropped.
    stalled: bool,
    /// Holds the deployment's slot and the backend's in-flight slot for as long as the stream
    /// runs; its breaker learns how the stream ended.
    lease: Lease,
    finished: Option<FinishReason>,
}

impl<F: Frames> Pump<F> {
    /// Renders the events the stream has ready now, at most [`READY_EVENTS`], without waiting
    /// for any. True when the stream ended among them (closed or failed: settled).
    fn render_ready(&mut self, events: &mut EventStream, out: &mut Vec<Bytes>) -> bool {
        for _ in 0..READY_EVENTS {
            let Some(next) = events.next().now_or_never() else { return false };
            if self.step(next, out) {
                return true;
            }
        }
        false
    }

    /// What the stream yielded next, rendered: an event, or its end (closed or failed: settled).
    /// True when the stream ended.
    fn step(&mut self, next: Option<Result<StreamEvent, BackendError>>, out: &mut Vec<Bytes>) -> bool {
        match next {
            Some(Ok(ev)) => {
                self.render(ev, out);
                false
            }
            Some(Err(e)) => {
                self.fail(e, out);
                true
            }
            None => {
                self.close(out);
                true
            }
        }
    }

    /// The frames of one backend event, and what settle learns from it.
    fn render(&mut self, ev: StreamEvent, out: &mut Vec<Bytes>) {
        match ev {
            StreamEvent::Delta { text, tool_calls, logprobs } => {
                if let Some(entries) = logprobs {
                    self.frames.logprobs(entries);
                }
                if text.is_empty() && tool_calls.is_none() {
                    return;
                }
                self.settle.deltas += 1;
                self.settle.note_delta(&text, tool_calls.is_some());
                out.extend(self.frames.delta(text, tool_calls));
            }
            StreamEvent::Finish(reason) => {
                self.finished = Some(reason);
                out.extend(self.frames.finish(reason));
            }
            StreamEvent::Usage(u) => self.settle.usage = Some(u),
            StreamEvent::Frame(chunk) => self.render_chunk(chunk, out),
        }
    }

    /// A passed-through chunk: settle reads its content and finish, the frame goes out as it
    /// came (or, for a framing that re-frames, as the events it stands for).
    fn render_chunk(&mut self, chunk: RawChunk, out: &mut Vec<Bytes>) {
        let Some(frame) = self.frames.raw(&chunk) else {
            return self.reframe(chunk, out);
        };
        if chunk.has_content() {
            self.settle.deltas += 1;
            self.settle.note_delta(chunk.text(), chunk.tool_calls);
        }
        if let Some(reason) = chunk.finish {
            self.finished = Some(reason);
        }
        out.push(frame);
    }

    /// A passed-through chunk for a framing that re-frames: the delta and finish it stands for.
    fn reframe(&mut self, chunk: RawChunk, out: &mut Vec<Bytes>) {
        let tool_calls = chunk.decode_tool_calls();
        let text = chunk.text().to_owned();
        if !text.is_empty() || tool_calls.is_some() {
            self.settle.deltas += 1;
            self.settle.note_delta(&text, tool_calls.is_some());
            out.extend(self.frames.delta(text, tool_calls));
        }
        if let Some(reason) = chunk.finish {
            self.finished = Some(reason);
            out.extend(self.frames.finish(reason));
        }
    }

    /// Normal end: the protocol's closing frames, the request settled. Ending without a finish
    /// reason is a failure of the upstream, reported as such.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(reason) = self.finished else {
            return self.fail(BackendError::Protocol("upstream ended the stream without a finish reason".into()), out);
        };
        self.lease.succeeded();
        let usage = self.settle.effective_usage();
        self.settle.finish(reason, usage);
        out.extend(self.frames.close(usage));
    }

    /// A failure after the first byte: the protocol's error frames, the request settled failed.
    fn fail(&mut self, e: BackendError, out: &mut Vec<Bytes>) {
        tracing::warn!(request_id = %self.settle.request_id, error = %e, "stream failed after the first byte");
        self.lease.failed(&e);
        let err = self.settle.fail(e.into());
        out.extend(self.frames.fail(&err));
    }
}

impl<F: Frames> Drop for Pump<F> {
    fn drop(&mut self) {
        if self.stalled {
            tracing::warn!(request_id = %self.settle.request_id, "client stopped reading the stream: cut");
            self.settle.fail(ApiError::client_stalled(self.write_timeout));
        }
    }
}

/// The rest of a stream after its head: the response body. Each poll renders what the backend
/// has sent since (one event's frames per chunk), or a keep-alive frame after
/// `server.sse_keepalive_secs` of silence; the stream's state lives in [`Live`], which the stall
/// watch ([`watch`]) can drop from outside when hyper stops asking because the client stopped
/// reading.
struct Rest<F: Frames> {
    /// What was rendered with the response head, sent as the first chunk.
    head: Option<Bytes>,
    live: Arc<Live<F>>,
    keepalive: Duration,
    /// One timer, not one per frame: armed for `keepalive` after the last frame seen when it
    /// fires, and only then re-armed (a frame just notes the time).
    idle: Pin<Box<Sleep>>,
    last: Instant,
    /// Where the finished stream's record is written from.
    tasks: tokio_util::task::TaskTracker,
}

/// A stream's state while it runs (`None` once it ended, or was cut), and since when its last
/// frame waits for the client.
struct Live<F: Frames> {
    running: Mutex<Option<Running<F>>>,
    waiting: watch::Waiting,
}

struct Running<F: Frames> {
    pump: Pump<F>,
    events: EventStream,
}

impl<F: Frames> Live<F> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running<F>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: Frames> watch::Watched for Live<F> {
    fn waiting(&self) -> &watch::Waiting {
        &self.waiting
    }

    fn cut(&self) {
        let Some(mut running) = self.lock().take() else { return };
        // Settled as `client_stalled` by the drop; the upstream stream and the lease go with it.
        running.pump.stalled = true;
    }
}

impl<F: Frames> Rest<F> {
    fn new(st: &AppState, pump: Pump<F>, events: EventStream, head: Bytes) -> Self {
        let keepalive = st.settings.keepalive;
        let waiting = st.streams().waiting(pump.write_timeout);
        let live = Arc::new(Live { running: Mutex::new(Some(Running { pump, events })), waiting });
        let watched: Arc<dyn watch::Watched> = live.clone();
        st.streams().watch(&watched);
        Self {
            // An empty chunk is never sent: in chunked framing it would read as the body's end.
            head: (!head.is_empty()).then_some(head),
            live,
            keepalive,
            idle: Box::pin(tokio::time::sleep(keepalive)),
            last: Instant::now(),
            tasks: st.tasks.clone(),
        }
    }

    /// A chunk for hyper; the stall watch notes that it now waits for the client.
    fn hand(&self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.live.waiting.handed();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl<F: Frames> http_body::Body for Rest<F> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.live.waiting.asked();
        if let Some(head) = this.head.take() {
            return this.hand(head);
        }
        let mut live = this.live.lock();
        let Some(running) = live.as_mut() else { return Poll::Ready(None) };
        let (mut out, mut ended) = (Vec::new(), false);
        while out.is_empty() && !ended {
            let Poll::Ready(next) = running.events.poll_next_unpin(cx) else { break };
            this.last = Instant::now();
            ended = running.pump.step(next, &mut out);
        }
        if ended && let Some(done) = live.take() {
            // Settled by `step`. The record is written (access log, ledger, metrics) by the
            // drop, which also lets the upstream stream and the lease go — off the path of the
            // last frames.
            this.tasks.spawn(async move { drop(done) });
        }
        if !out.is_empty() {
            drop(live);
            return this.hand(join(out));
        }
        let Some(running) = live.as_mut() else { return Poll::Ready(None) };
        while this.idle.as_mut().poll(cx).is_ready() {
            let due = this.last + this.keepalive;
            let now = Instant::now();
            if now < due {
                this.idle.as_mut().reset(due.into());
                continue;
            }
            this.last = now;
            this.idle.as_mut().reset((now + this.keepalive).into());
            if let Some(frame) = running.pump.frames.keepalive() {
                drop(live);
                return this.hand(frame);
            }
        }
        Poll::Pending
    }
}
