//! The tenancy concern: the usage ledger's and the quotas' snapshots, pushed by the sampler.

use super::*;

impl Metrics {
    /// Budget and rate refusals counted by the quotas (totals since start).
    pub fn set_refusals(&self, r: &crate::tenancy::RefusalCounts) {
        use std::sync::atomic::Ordering::Relaxed;
        for (scope, n) in [("key", &r.budget_key), ("tenant", &r.budget_tenant)] {
            self.counter(BUDGET_REJECTIONS, vec![slabel("scope", scope)]).absolute(n.load(Relaxed));
        }
        // Concurrency refusals share the rate-limit series with the limiter's refusals.
        let concurrency = [("key", &r.concurrency_key), ("tenant", &r.concurrency_tenant)];
        for ((scope, n), seen) in concurrency.into_iter().zip(&self.seen_concurrency) {
            self.add_rate_limited(scope, seen, n.load(Relaxed));
        }
    }

    /// What the shared budget store did (only when budgets are shared).
    pub fn set_shared_budgets(&self, q: &crate::tenancy::quotas::Quotas) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(store) = q.shared() else { return };
        let c = &q.shared_counts;
        let events = [
            ("error", c.errors.load(Relaxed)),
            ("failed_open", c.failed_open.load(Relaxed)),
            ("seed", c.seeds.load(Relaxed)),
            ("correction", c.corrections.load(Relaxed)),
            ("settle_failed", store.failed_settles()),
        ];
        for (event, n) in events {
            self.counter(BUDGET_STORE, vec![slabel("event", event)]).absolute(n);
        }
    }

    /// The usage ledger's counters.
    pub fn set_ledger(&self, s: &ferrogate_core::tenancy::ledger::LedgerStats) {
        let rows = [
            ("accepted", s.accepted),
            ("written", s.written),
            ("duplicate", s.duplicates),
            ("dropped", s.dropped),
            ("lost", s.lost),
        ];
        for (outcome, n) in rows {
            self.counter(LEDGER_ROWS, vec![slabel("outcome", outcome)]).absolute(n);
        }
        self.counter(LEDGER_RETRIES, vec![]).absolute(s.retries);
        self.gauge(LEDGER_PENDING, vec![]).set(s.pending() as f64);
        let lag = match s.pending_since_unix_ms {
            0 => 0.0,
            since => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                (now.as_millis() as f64 - since as f64).max(0.0) / 1000.0
            }
        };
        self.gauge(LEDGER_LAG, vec![]).set(lag);
    }
}
