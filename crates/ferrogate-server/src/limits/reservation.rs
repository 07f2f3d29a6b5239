//! [`RateReservation`]: the counters a request charged. [`RateReservation::finish`] reconciles
//! the token reservation with the tokens used; dropped unfinished (the request never reached a
//! backend), it gives everything back. Either happens exactly once.

use std::sync::Arc;

use ferrogate_core::limits::{Dim, LimitStore, Quota, Refund};

pub(crate) struct Held {
    pub key: String,
    pub quota: Quota,
    pub dim: Dim,
    pub cost: u64,
}

/// The counters a request charged. [`RateReservation::finish`] reconciles the token reservation
/// with the tokens used; dropped unfinished (the request never reached a backend), it gives
/// everything back. Either happens exactly once.
pub struct RateReservation {
    store: Arc<dyn LimitStore>,
    held: Vec<Held>,
    charged_at_us: i64,
    settled: bool,
}

impl RateReservation {
    pub(crate) fn new(store: Arc<dyn LimitStore>, held: Vec<Held>, charged_at_us: i64) -> Self {
        Self { store, held, charged_at_us, settled: false }
    }

    /// Settles with `tokens` actually used (prompt + completion).
    pub fn finish(mut self, tokens: u64) {
        self.settle(Some(tokens));
    }

    fn settle(&mut self, used: Option<u64>) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let refunds: Vec<Refund> = self
            .held
            .iter()
            .filter_map(|h| {
                let back = match (h.dim, used) {
                    (Dim::Requests, Some(_)) => return None,
                    (Dim::Tokens, Some(t)) => i128::from(h.cost) - i128::from(t),
                    (_, None) => i128::from(h.cost),
                };
                let units = i64::try_from(back).unwrap_or(if back > 0 { i64::MAX } else { i64::MIN });
                (units != 0).then(|| Refund {
                    key: h.key.clone(),
                    dim: h.dim,
                    quota: h.quota,
                    units,
                    charged_at_us: self.charged_at_us,
                })
            })
            .collect();
        self.store.release(refunds);
    }
}

impl Drop for RateReservation {
    fn drop(&mut self) {
        self.settle(None);
    }
}
