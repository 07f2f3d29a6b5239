//! Time bounds of a stream: first-token, inter-token and total timeouts.
//!
//! Invariant: a stalled upstream ends in a `Timeout` error item, never a silent end or a hang;
//! after an error item the stream ends.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::backend::{BackendError, EventStream, TimeoutKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTimeouts {
    pub first_token: Duration,
    pub inter_token: Duration,
    pub total: Duration,
}

impl Default for StreamTimeouts {
    fn default() -> Self {
        Self {
            first_token: Duration::from_secs(120),
            inter_token: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

struct State {
    inner: EventStream,
    deadline: Instant,
    t: StreamTimeouts,
    seen_first: bool,
    done: bool,
}

/// Wraps `inner` so that each item must arrive within its timeout. Time starts now.
pub fn with_timeouts(inner: EventStream, t: StreamTimeouts) -> EventStream {
    let st = State { inner, deadline: Instant::now() + t.total, t, seen_first: false, done: false };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let (step, kind) = if st.seen_first {
            (st.t.inter_token, TimeoutKind::InterToken)
        } else {
            (st.t.first_token, TimeoutKind::FirstToken)
        };
        let step_deadline = Instant::now() + step;
        let (deadline, kind) =
            if step_deadline < st.deadline { (step_deadline, kind) } else { (st.deadline, TimeoutKind::Total) };
        match tokio::time::timeout_at(deadline, st.inner.next()).await {
            Ok(Some(item)) => {
                st.seen_first = true;
                st.done = item.is_err();
                Some((item, st))
            }
            Ok(None) => None,
            Err(_) => {
                st.done = true;
                Some((Err(BackendError::Timeout(kind)), st))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::StreamEvent;
    use futures::stream;

    fn delta(s: &str) -> Result<StreamEvent, BackendError> {
        Ok(StreamEvent::Delta { text: s.into(), tool_calls: None, logprobs: None })
    }

    fn t(first: u64, inter: u64, total: u64) -> StreamTimeouts {
        StreamTimeouts {
            first_token: Duration::from_secs(first),
            inter_token: Duration::from_secs(inter),
            total: Duration::from_secs(total),
        }
    }

    /// Items that arrive after the given delays (seconds since the previous item).
    fn delayed(delays: Vec<u64>) -> EventStream {
        Box::pin(stream::iter(delays).then(|d| async move {
            tokio::time::sleep(Duration::from_secs(d)).await;
            delta("x")
        }))
    }

    async fn collect(s: EventStream) -> Vec<Result<StreamEvent, BackendError>> {
        s.collect().await
    }

    fn timeout_kind(items: &[Result<StreamEvent, BackendError>]) -> Option<TimeoutKind> {
        match items.last() {
            Some(Err(BackendError::Timeout(k))) => Some(*k),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn within_bounds_passes_everything() {
        let items = collect(with_timeouts(delayed(vec![5, 1, 1]), t(10, 2, 100))).await;
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_timeout() {
        let items = collect(with_timeouts(delayed(vec![11]), t(10, 2, 100))).await;
        assert_eq!(timeout_kind(&items), Some(TimeoutKind::FirstToken));
    }

    #[tokio::test(start_paused = true)]
    async fn inter_token_timeout_after_first() {
        let items = collect(with_timeouts(delayed(vec![1, 1, 3]), t(10, 2, 100))).await;
        assert_eq!(items.len(), 3);
        assert_eq!(timeout_kind(&items), Some(TimeoutKind::InterToken));
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_even_when_tokens_keep_coming() {
        let mut bounds = t(10, 2, 5);
        bounds.total = Duration::from_millis(4500);
        let items = collect(with_timeouts(delayed(vec![1; 20]), bounds)).await;
        assert_eq!(items.len(), 5, "four tokens then the timeout");
        assert_eq!(timeout_kind(&items), Some(TimeoutKind::Total));
    }

    #[tokio::test(start_paused = true)]
    async fn ends_after_an_error_item() {
        let s: EventStream =
            Box::pin(stream::iter(vec![delta("a"), Err(BackendError::Protocol("x".into())), delta("b")]));
        let items = collect(with_timeouts(s, t(10, 2, 100))).await;
        assert_eq!(items.len(), 2);
    }
}
