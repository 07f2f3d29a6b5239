//! Streaming responses: the frames a client sees (OpenAI `chat.completion.chunk`, legacy
//! `text_completion` chunks, or the seeds' simple `/stream` frames), and the pump task that moves
//! backend events to the client as they arrive.
//!
//! Invariants: the first frame is sent only after the backend produced its first event, so errors
//! before it get a real status; after it, a failure ends the stream with a `data: {"error":…}`
//! event and `[DONE]`, never a silent clean end; a client disconnect ends the pump at once, which
//! drops the backend stream (cancelling upstream work) and settles the request; so does a client
//! that stays connected but reads nothing for `server.client_write_timeout_secs` (settled as
//! `client_stalled`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ferrogate_core::{BackendError, EventStream, StreamEvent};
use ferrogate_protocol::openai::{
    ChatCompletionChunk, ChunkChoice, CompletionChoice, Delta, FinishReason, Role, Usage, unix_now,
};
use ferrogate_protocol::sse::{DONE_FRAME, KEEPALIVE_FRAME, data_frame};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::handlers::decorate;
use crate::pipeline::{Answer, Body as Answered};
use crate::request::Endpoint;
use crate::resilience::dispatch::Lease;
use crate::settle::Settle;
use crate::state::AppState;

/// Builds the frames of one stream.
pub struct Encoder {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl Encoder {
    pub fn new(endpoint: Endpoint, request_id: &str, model: &str, include_usage: bool) -> Self {
        let prefix = if endpoint == Endpoint::Completion { "cmpl-" } else { "chatcmpl-" };
        Self {
            endpoint,
            id: format!("{prefix}{request_id}"),
            created: unix_now(),
            model: model.to_owned(),
            include_usage,
        }
    }

    fn chat_chunk(&self, delta: Delta, finish: Option<FinishReason>) -> Bytes {
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }],
            usage: self.include_usage.then_some(None),
            system_fingerprint: None,
        };
        json_frame(&chunk)
    }

    fn text_chunk(&self, text: String, finish: Option<FinishReason>) -> Bytes {
        let choice = CompletionChoice { index: 0, text, logprobs: None, finish_reason: finish };
        let mut v = serde_json::json!({
            "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        json_frame(&v)
    }

    /// Frames sent before any content: the role delta of chat streams.
    pub fn opening(&self) -> Option<Bytes> {
        (self.endpoint == Endpoint::Chat).then(|| {
            self.chat_chunk(Delta { role: Some(Role::Assistant), content: Some(String::new()), tool_calls: None }, None)
        })
    }

    pub fn delta(&self, text: String, tool_calls: Option<Vec<Value>>) -> Bytes {
        match self.endpoint {
            Endpoint::Chat => {
                self.chat_chunk(Delta { role: None, content: (!text.is_empty()).then_some(text), tool_calls }, None)
            }
            Endpoint::Completion => self.text_chunk(text, None),
            Endpoint::Stream | Endpoint::Generate => json_frame(&serde_json::json!({ "text": text })),
        }
    }

    pub fn finish(&self, reason: FinishReason) -> Option<Bytes> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chat_chunk(Delta::default(), Some(reason))),
            Endpoint::Completion => Some(self.text_chunk(String::new(), Some(reason))),
            Endpoint::Stream | Endpoint::Generate => {
                Some(json_frame(&serde_json::json!({ "text": "", "finish_reason": reason.as_str() })))
            }
        }
    }

    /// The final usage chunk (empty `choices`), only when the client asked for it.
    pub fn usage(&self, usage: Usage) -> Option<Bytes> {
        if !self.include_usage {
            return None;
        }
        let object = if self.endpoint == Endpoint::Completion { "text_completion" } else { "chat.completion.chunk" };
        Some(json_frame(&serde_json::json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": [], "usage": usage,
        })))
    }
}

fn json_frame<T: serde::Serialize>(v: &T) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(b) => data_frame(&b),
        Err(e) => {
            tracing::error!(error = %e, "failed to encode a stream frame");
            Bytes::new()
        }
    }
}

/// Streams an answer whose backend produced its first event (errors before it were answered
/// with a status by the pipeline). A whole answer is not expected here; it is encoded as a
/// one-event stream all the same.
pub fn respond(st: AppState, answer: Answer) -> Response {
    let Answer { endpoint, shown, include_usage, body } = answer;
    let (first, events, lease, mut settle) = match body {
        Answered::Stream { first, events, lease, settle } => (first, events, lease, settle),
        Answered::Whole { .. } => {
            return ApiError::internal("a whole answer was sent to the stream encoder").into_response();
        }
    };
    settle.first_token = Some(Instant::now());
    let enc = Encoder::new(endpoint, &settle.request_id, &shown, include_usage);
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let mut res = body.into_response();
    decorate(&mut res, &shown, &settle);
    let pump = Pump {
        enc,
        tx,
        settle,
        keepalive: st.keepalive,
        write_timeout: st.client_write_timeout,
        stalled: AtomicBool::new(false),
        lease,
        finished: None,
    };
    st.tasks.spawn(pump.run(first, events));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

struct Pump {
    enc: Encoder,
    tx: mpsc::Sender<Bytes>,
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

impl Pump {
    async fn run(mut self, first: StreamEvent, mut events: EventStream) {
        if self.open(first).await.is_err() {
            return; // settle drops as Cancelled
        }
        loop {
            let idle = tokio::time::sleep(self.keepalive);
            let step = tokio::select! {
                biased;
                _ = self.tx.closed() => return,
                ev = events.next() => ev,
                _ = idle => {
                    if self.send(Bytes::from_static(KEEPALIVE_FRAME)).await.is_err() { return; }
                    continue;
                }
            };
            let sent = match step {
                Some(Ok(ev)) => self.on_event(ev).await,
                Some(Err(e)) => return self.fail(e).await,
                None => break,
            };
            if sent.is_err() {
                return;
            }
        }
        self.close().await;
    }

    async fn open(&mut self, first: StreamEvent) -> Result<(), Gone> {
        if let Some(f) = self.enc.opening() {
            self.send(f).await?;
        }
        self.on_event(first).await
    }

    async fn on_event(&mut self, ev: StreamEvent) -> Result<(), Gone> {
        match ev {
            StreamEvent::Delta { text, tool_calls } => {
                if text.is_empty() && tool_calls.is_none() {
                    return Ok(());
                }
                self.settle.deltas += 1;
                self.settle.note_text(&text);
                let frame = self.enc.delta(text, tool_calls);
                self.send(frame).await
            }
            StreamEvent::Finish(reason) => {
                self.finished = Some(reason);
                match self.enc.finish(reason) {
                    Some(f) => self.send(f).await,
                    None => Ok(()),
                }
            }
            StreamEvent::Usage(u) => {
                self.settle.usage = Some(u);
                Ok(())
            }
        }
    }

    /// Normal end: the usage chunk if asked, then `[DONE]`. Ending without a finish reason is a
    /// failure of the upstream, reported as such.
    async fn close(mut self) {
        let Some(reason) = self.finished else {
            return self.fail(BackendError::Protocol("upstream ended the stream without a finish reason".into())).await;
        };
        self.lease.succeeded();
        let usage = self.settle.effective_usage();
        self.settle.finish(reason, usage);
        if let Some(f) = self.enc.usage(usage)
            && self.send(f).await.is_err()
        {
            return;
        }
        let _ = self.send(Bytes::from_static(DONE_FRAME)).await;
    }

    async fn fail(mut self, e: BackendError) {
        tracing::warn!(request_id = %self.settle.request_id, error = %e, "stream failed after the first byte");
        self.lease.failed(&e);
        let body = self.settle.fail(e.into()).body();
        let frame = json_frame(&body);
        if self.send(frame).await.is_ok() {
            let _ = self.send(Bytes::from_static(DONE_FRAME)).await;
        }
    }

    /// Hands a frame to the response body. A client that stays connected but reads nothing
    /// fills the channel (after the socket's and hyper's buffers): after `write_timeout` the
    /// pump gives up, which drops the upstream stream (cancelling it) and the lease (freeing
    /// the slot), and the request settles as `client_stalled`.
    async fn send(&self, frame: Bytes) -> Result<(), Gone> {
        match tokio::time::timeout(self.write_timeout, self.tx.send(frame)).await {
            Ok(sent) => sent.map_err(|_| Gone),
            Err(_) => {
                self.stalled.store(true, Ordering::Relaxed);
                Err(Gone)
            }
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        if self.stalled.load(Ordering::Relaxed) {
            tracing::warn!(request_id = %self.settle.request_id, "client stopped reading the stream: cut");
            self.settle.fail(ApiError::client_stalled(self.write_timeout));
        }
    }
}
