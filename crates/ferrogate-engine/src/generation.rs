//! The caller's end of one request: a stream of `GenEvent`s. Dropping it cancels the request;
//! the scheduler sees the closed channel at its next step and frees the slot and its KV.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::request::GenEvent;

#[derive(Debug)]
pub struct Generation {
    rx: UnboundedReceiver<GenEvent>,
}

impl Generation {
    pub(crate) fn new(rx: UnboundedReceiver<GenEvent>) -> Self {
        Self { rx }
    }

    /// The next event; `None` after `Done`/`Error` (or if the engine went away).
    pub async fn next(&mut self) -> Option<GenEvent> {
        self.rx.recv().await
    }

    /// Stops the request (same as dropping it).
    pub fn cancel(self) {}
}

impl futures_core::Stream for Generation {
    type Item = GenEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        self.rx.poll_recv(cx)
    }
}
