//! An upstream's streamed body → [`EventStream`]: bytes are decoded as they arrive (nothing is
//! held back but one partial frame), the body's end is checked against the protocol's own end
//! marker, and first-token / inter-token / total timeouts bound it.
//!
//! Invariant: a body that ends or breaks before the upstream said it finished yields
//! `Err(Protocol)` — never a silent clean end; after an error item the stream ends. Dropping the
//! stream drops the response, which closes the upstream connection (cancellation).

use std::collections::VecDeque;
use std::time::Duration;

use ferrogate_core::stream::{StreamTimeouts, with_timeouts};
use ferrogate_core::{BackendError, EventStream, StreamEvent, TimeoutKind};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::http::{Body, BoxError, error_chain, truncate};

pub(crate) type Item = Result<StreamEvent, BackendError>;

/// How long the end of a body is awaited after the end marker (see `release_connection`).
const DRAIN_GRACE: Duration = Duration::from_millis(20);

/// Message of a stream that ended before the upstream's finish.
pub(crate) const PREMATURE_END: &str = "upstream closed the stream before it finished";

/// One protocol's framing of a streamed body (SSE chunks, NDJSON lines). Pure: no I/O.
pub(crate) trait Decoder: Send + 'static {
    /// Decodes newly arrived bytes, appending the events they complete in order.
    fn push(&mut self, bytes: &[u8], out: &mut VecDeque<Item>);
    /// The body ended cleanly: decode whatever is still buffered.
    fn flush(&mut self, _out: &mut VecDeque<Item>) {}
    /// The end marker arrived (`[DONE]`, the `done` line): nothing more is read.
    fn is_done(&self) -> bool;
    /// The upstream reported how generation ended: the body may now end without an error.
    fn finished(&self) -> bool;
}

struct Driver<D> {
    body: Body,
    decoder: D,
    queue: VecDeque<Item>,
    ended: bool,
}

/// The events of `resp`'s body, decoded by `decoder`. No timeouts: see [`bounded`].
pub(crate) fn events(resp: http::Response<Body>, decoder: impl Decoder) -> EventStream {
    body_events(resp.into_body(), decoder)
}

pub(crate) fn body_events(body: Body, decoder: impl Decoder) -> EventStream {
    // Room for one event: a frame usually completes one, and a held stream keeps this queue for
    // its whole life (the first push would otherwise reserve four, ~500 bytes per stream).
    let driver = Driver { body, decoder, queue: VecDeque::with_capacity(1), ended: false };
    Box::pin(futures::stream::unfold(driver, Driver::step))
}

impl<D: Decoder> Driver<D> {
    async fn step(mut self) -> Option<(Item, Self)> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                if item.is_err() {
                    self.ended = true;
                    self.queue.clear();
                }
                return Some((item, self));
            }
            if self.ended {
                return None;
            }
            if self.decoder.is_done() {
                self.release_connection().await;
                return None;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(bytes) = frame.data_ref() {
                        self.decoder.push(bytes, &mut self.queue);
                    }
                }
                Some(Err(e)) => self.end_of_body(Some(e)),
                None => self.end_of_body(None),
            }
        }
    }

    fn end_of_body(&mut self, error: Option<BoxError>) {
        self.ended = true;
        if error.is_none() {
            self.decoder.flush(&mut self.queue);
        }
        if !self.decoder.finished() {
            let message = match error {
                Some(e) => truncate(&format!("{PREMATURE_END}: {}", error_chain(&*e))),
                None => PREMATURE_END.to_owned(),
            };
            self.queue.push_back(Err(BackendError::Protocol(message)));
        }
    }

    /// After the end marker the body's terminating bytes are normally already on their way:
    /// reading them lets the connection go back to the pool instead of being closed. An
    /// upstream that keeps the body open after its end marker costs at most [`DRAIN_GRACE`].
    async fn release_connection(&mut self) {
        self.ended = true;
        let _ = tokio::time::timeout(DRAIN_GRACE, self.body.frame()).await;
    }
}

/// The time left of `limit` since `start`.
fn remaining(limit: Duration, start: Instant) -> Duration {
    limit.saturating_sub(start.elapsed())
}

/// Applies `t` to `events`, counting the first-token and total budgets from `sent` (when the
/// request went out), not from now.
pub(crate) fn bounded(events: EventStream, t: StreamTimeouts, sent: Instant) -> EventStream {
    let t = StreamTimeouts {
        first_token: remaining(t.first_token, sent),
        inter_token: t.inter_token,
        total: remaining(t.total, sent),
    };
    with_timeouts(events, t)
}

/// The deadline for the response head of a stream, and which timeout it is.
pub(crate) fn head_deadline(t: &StreamTimeouts, sent: Instant) -> (Instant, TimeoutKind) {
    if t.first_token < t.total {
        (sent + t.first_token, TimeoutKind::FirstToken)
    } else {
        (sent + t.total, TimeoutKind::Total)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Each byte is one event; `!` marks finished, `.` marks done.
    #[derive(Default)]
    struct Bytewise {
        finished: bool,
        done: bool,
    }

    impl Decoder for Bytewise {
        fn push(&mut self, bytes: &[u8], out: &mut VecDeque<Item>) {
            for b in bytes {
                match b {
                    b'!' => self.finished = true,
                    b'.' => self.done = true,
                    _ => out.push_back(Ok(StreamEvent::Delta {
                        text: (*b as char).to_string(),
                        tool_calls: None,
                        logprobs: None,
                    })),
                }
            }
        }
        fn is_done(&self) -> bool {
            self.done
        }
        fn finished(&self) -> bool {
            self.finished
        }
    }

    fn body(parts: &[&'static str]) -> Body {
        let frames: Vec<Result<http_body::Frame<bytes::Bytes>, BoxError>> =
            parts.iter().map(|p| Ok(http_body::Frame::data(bytes::Bytes::from_static(p.as_bytes())))).collect();
        http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn run(parts: &[&'static str]) -> Vec<Item> {
        use futures::StreamExt;
        body_events(body(parts), Bytewise::default()).collect().await
    }

    #[tokio::test]
    async fn finished_then_end_is_clean() {
        let items = run(&["ab", "!"]).await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn end_marker_stops_reading() {
        let items = run(&["a.", "zz"]).await;
        assert_eq!(items.len(), 1);
    }

    #[tokio::test]
    async fn end_before_finish_is_a_protocol_error() {
        let items = run(&["ab"]).await;
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2], Err(BackendError::Protocol(m)) if m == PREMATURE_END));
    }

    #[test]
    fn head_deadline_picks_the_tighter_timeout() {
        let now = Instant::now();
        let t = StreamTimeouts {
            first_token: Duration::from_secs(1),
            inter_token: Duration::from_secs(1),
            total: Duration::from_secs(5),
        };
        assert_eq!(head_deadline(&t, now), (now + Duration::from_secs(1), TimeoutKind::FirstToken));
        let t = StreamTimeouts { total: Duration::from_millis(500), ..t };
        assert_eq!(head_deadline(&t, now).1, TimeoutKind::Total);
    }
}
