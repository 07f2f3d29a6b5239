//! When background work may start: only while no deployment queue has an interactive request
//! waiting for a slot (batch lines then queue at batch priority behind any that arrive).

use ferrogate_jobs::Capacity;

use crate::state::AppState;

/// Spare capacity from the deployments' admission queues.
pub struct Spare(AppState);

impl Spare {
    pub fn new(st: AppState) -> Self {
        Self(st)
    }
}

impl Capacity for Spare {
    fn has_spare(&self) -> bool {
        !self.0.is_draining()
            && self.0.current().registry.deployments().iter().all(|d| d.queue.stats().waiting_interactive == 0)
    }
}
