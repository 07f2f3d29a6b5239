//! Background work: the durable queue's snapshot (`JobQueue::stats`), pushed by the jobs sampler.

use super::*;

impl Metrics {
    /// Per kind: ready and running jobs, the oldest ready job's wait, and the DLQ size.
    pub fn set_jobs(&self, s: &ferrogate_core::jobs::QueueStats) {
        for (kind, k) in &s.kinds {
            let label = || vec![slabel("kind", kind.as_str())];
            self.gauge(JOBS_QUEUED, label()).set((k.ready + k.delayed) as f64);
            self.gauge(JOBS_RUNNING, label()).set(k.running as f64);
            self.gauge(JOBS_OLDEST_AGE, label()).set(k.oldest_ready_age_ms as f64 / 1000.0);
            self.gauge(JOBS_DEAD, label()).set(k.dead as f64);
        }
    }
}
