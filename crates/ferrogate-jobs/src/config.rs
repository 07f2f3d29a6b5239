//! The worker pool's settings.

use std::time::Duration;

use ferrogate_core::jobs::JobKind;

/// How many jobs of a kind run at once on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindWorkers {
    /// The kind.
    pub kind: JobKind,
    /// At most this many at once (≥ 1).
    pub concurrency: usize,
}

/// The worker pool's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// This instance's name in attempt records (host name, pod name).
    pub instance: String,
    /// The kinds this instance runs.
    pub kinds: Vec<KindWorkers>,
    /// The lease length; a job whose worker stops heartbeating is leased again after it.
    pub visibility_timeout: Duration,
    /// Heartbeats extend the lease this often: a fraction of the visibility timeout, so one
    /// or two late heartbeats do not lose the lease.
    pub heartbeat_every: Duration,
    /// How often an idle kind looks for work (enqueues on this instance wake it sooner).
    pub poll_interval: Duration,
    /// How often a kind held back by [`crate::Capacity`] asks again.
    pub capacity_poll: Duration,
}

impl PoolConfig {
    /// One worker per kind, 60 s leases renewed every 20 s, 1 s polls.
    pub fn new(instance: impl Into<String>, kinds: Vec<KindWorkers>) -> Self {
        let visibility_timeout = Duration::from_secs(60);
        Self {
            instance: instance.into(),
            kinds,
            visibility_timeout,
            heartbeat_every: visibility_timeout / 3,
            poll_interval: Duration::from_secs(1),
            capacity_poll: Duration::from_millis(100),
        }
    }

    /// The same, with leases of `timeout` renewed every third of it.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self.heartbeat_every = timeout / 3;
        self
    }
}
