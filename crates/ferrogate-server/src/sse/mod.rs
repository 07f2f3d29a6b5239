//! Streaming responses: the pump task that moves backend events to the client as they arrive,
//! through a front protocol's [`Frames`] — OpenAI's SSE chunks ([`openai`]), Anthropic's
//! Messages events ([`anthropic`]) or Ollama's NDJSON lines ([`ndjson`]).
//!
//! Invariants, whatever the framing: the first frame is sent only after the backend produced its
//! first event, so errors before it get a real status; what the backend has already sent goes
//! out with the response head (no task hand-off before the first content frame), and an answer
//! that is already whole is answered without a pump task; after it, a failure ends the stream with
//! the protocol's error frame (OpenAI `data: {"error":…}` + `[DONE]`, Anthropic `event: error`,
//! Ollama `{"error":…}`), never a silent clean end; a client disconnect ends the pump at once,
//! which drops the backend stream (cancelling upstream work) and settles the request; so does a
//! client that stays connected but reads nothing for `server.client_write_timeout_secs`
//! (settled as `client_stalled`).

pub mod anthropic;
pub mod ndjson;
pub mod openai;
pub mod responses;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrogate_core::chunk::RawChunk;
use ferrogate_core::{BackendError, EventStream, StreamEvent};
use ferrogate_protocol::openai::{FinishReason, Usage};
use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

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

/// Events rendered into the response head at most: a long answer an upstream sent at once still
/// flows through the pump's bounded channel.
const READY_EVENTS: usize = 64;

/// Streams an answer whose backend produced its first event (errors before it were answered
/// with a status by the pipeline) through the frames `make` builds from the request's `Settle`
/// and the model name shown. A whole answer is not expected here: it is a 500.
///
/// The opening frames, the first event and the events already decoded behind it (an upstream
/// that wrote several at once) are rendered here and sent with the response head. If that was
/// the whole stream, the answer is settled here and no pump task runs; otherwise the pump moves
/// the rest as it arrives.
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
    let mut pump = Pump {
        frames,
        settle,
        keepalive: st.settings.keepalive,
        write_timeout: st.settings.client_write_timeout,
        stalled: AtomicBool::new(false),
        lease,
        finished: None,
    };
    let mut ready = pump.frames.opening();
    pump.render(first, &mut ready);
    let ended = pump.render_ready(&mut events, &mut ready);
    let head = join(ready);
    let (mut res, rest) = if ended {
        (Body::from(head).into_response(), None)
    } else {
        let (tx, rx) = mpsc::channel::<Bytes>(32);
        // An empty chunk is never sent: in chunked framing it would read as the body's end.
        let head = futures::stream::iter((!head.is_empty()).then_some(head));
        let frames = head.chain(ReceiverStream::new(rx));
        (Body::from_stream(frames.map(Ok::<_, Infallible>)).into_response(), Some(tx))
    };
    decorate(&mut res, &shown, &pump.settle);
    match rest {
        Some(tx) => {
            st.tasks.spawn(pump.run(tx, events));
        }
        // Finished or failed above; the record is written (access log, ledger, metrics) by the
        // drop, off the path of the response head.
        None => {
            st.tasks.spawn(async move { drop(pump) });
        }
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
/// into frames synchronously ([`Pump::render`]); the pump task ([`Pump::run`]) only moves them.
struct Pump<F: Frames> {
    frames: F,
    settle: Settle,
    keepalive: Duration,
    /// Longest a frame may wait for the client to take it (see [`Pump::send`]).
    write_timeout: Duration,
    /// Set when the client stopped reading: settled as `client_stalled` when the pump ends.
    stalled: AtomicBool,
    /// Holds the deployment's slot and the backend's in-flight slot for as long as the stream
    /// runs; its breaker learns how the stream ended.
    lease: Lease,
    finished: Option<FinishReason>,
}

/// The client is gone; stop.
struct Gone;

impl<F: Frames> Pump<F> {
    async fn run(mut self, tx: mpsc::Sender<Bytes>, mut events: EventStream) {
        // One timer for the keepalive, not one per frame: it is armed for `keepalive` after the
        // last frame seen when it fires, and only then re-armed (a frame just notes the time).
        let mut last = Instant::now();
        let idle = tokio::time::sleep(self.keepalive);
        tokio::pin!(idle);
        let mut out = Vec::new();
        loop {
            let step = tokio::select! {
                biased;
                _ = tx.closed() => return,
                ev = events.next() => ev,
                _ = &mut idle => {
                    let due = last + self.keepalive;
                    if Instant::now() >= due {
                        if let Some(f) = self.frames.keepalive()
                            && self.send(&tx, f).await.is_err()
                        {
                            return;
                        }
                        last = Instant::now();
                    }
                    idle.as_mut().reset((last + self.keepalive).into());
                    continue;
                }
            };
            last = Instant::now();
            let ended = self.step(step, &mut out);
            if self.send_all(&tx, &mut out).await.is_err() || ended {
                return;
            }
        }
    }

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

    /// Hands the rendered frames to the response body, leaving `out` empty.
    async fn send_all(&self, tx: &mpsc::Sender<Bytes>, out: &mut Vec<Bytes>) -> Result<(), Gone> {
        for f in out.drain(..) {
            self.send(tx, f).await?;
        }
        Ok(())
    }

    /// Hands a frame to the response body. A client that stays connected but reads nothing
    /// fills the channel (after the socket's and hyper's buffers): after `write_timeout` the
    /// pump gives up, which drops the upstream stream (cancelling it) and the lease (freeing
    /// the slot), and the request settles as `client_stalled`.
    async fn send(&self, tx: &mpsc::Sender<Bytes>, frame: Bytes) -> Result<(), Gone> {
        match tokio::time::timeout(self.write_timeout, tx.send(frame)).await {
            Ok(sent) => sent.map_err(|_| Gone),
            Err(_) => {
                self.stalled.store(true, Ordering::Relaxed);
                Err(Gone)
            }
        }
    }
}

impl<F: Frames> Drop for Pump<F> {
    fn drop(&mut self) {
        if self.stalled.load(Ordering::Relaxed) {
            tracing::warn!(request_id = %self.settle.request_id, "client stopped reading the stream: cut");
            self.settle.fail(ApiError::client_stalled(self.write_timeout));
        }
    }
}
