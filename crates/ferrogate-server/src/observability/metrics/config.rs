//! Live reconfiguration: reloads by result (`ferrogate_config_reloads_total{result="ok|error"}`).

use super::*;

impl Metrics {
    /// One reload attempt: applied (`ok`) or refused, the old configuration kept (`error`).
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.counter(CONFIG_RELOADS, vec![slabel("result", result)]).increment(1);
    }

    /// Zero-valued reload counters, so both series exist from the start.
    pub(super) fn preregister_reloads(&self) {
        for result in ["ok", "error"] {
            self.counter(CONFIG_RELOADS, vec![slabel("result", result)]).increment(0);
        }
    }
}
