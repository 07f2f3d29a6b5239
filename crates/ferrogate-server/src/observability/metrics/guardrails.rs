//! The guardrails concern: findings and judge outcomes, through the `Recorder` trait the
//! guardrails stage calls.

use super::*;

impl crate::guardrails::Recorder for Metrics {
    fn finding(&self, rule: &'static str, action: &'static str) {
        self.counter(GUARDRAIL_FINDINGS, vec![slabel("rule", rule), slabel("action", action)]).increment(1);
    }

    fn judge(&self, outcome: &'static str) {
        self.counter(GUARDRAIL_JUDGE, vec![slabel("outcome", outcome)]).increment(1);
    }
}
