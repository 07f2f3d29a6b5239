//! Settling a request's tenancy effects, from `pipeline::Settle`'s `Drop`: the usage row (exactly
//! one per request: `Settle` takes the request's ledger slot when it is created) and the
//! reconciliation of the budget reservation with what was actually used.
//!
//! What a request is charged (docs/TENANCY.md): the provider's usage when it reported one (an
//! explicit 0 stays 0); otherwise, once anything was delivered or the client went away
//! mid-request, the prompt estimate plus the content deltas delivered; a request that failed
//! before producing anything is charged nothing.

use std::sync::Arc;

use ferrogate_core::tenancy::UsageRecord;

use super::Tenancy;
use super::caller::Caller;
use super::quotas::Admission;
use crate::limits::RateReservation;
use crate::pipeline::{Outcome, Plan, Settle};
use crate::state::AppState;

/// Held by `Settle`; does its work once, in [`Metering::settle`].
#[derive(Default)]
pub struct Metering {
    admission: Option<Admission>,
    /// The rate-limit counters charged at admission (tokens reconciled here).
    rate: Option<RateReservation>,
    ledger: Option<(Arc<Tenancy>, Arc<Caller>)>,
}

/// Tokens charged: (prompt, cached prompt, completion).
pub fn charged(s: &Settle) -> (u64, u64, u64) {
    if let Some(u) = s.usage {
        return (u.prompt_tokens.into(), u.cached_tokens().into(), u.completion_tokens.into());
    }
    let started = s.first_token.is_some() || s.outcome == Outcome::Cancelled;
    if started { (s.prompt_estimate.into(), 0, s.deltas.into()) } else { (0, 0, 0) }
}

impl Metering {
    /// Takes the plan's reservation and, if this request is metered, its ledger slot.
    pub fn start(st: &AppState, plan: &mut Plan) -> Self {
        let (admission, rate) = (plan.admission.take(), plan.rate.take());
        let ledger = match (&st.tenancy, &plan.caller) {
            (Some(t), Some(c)) if c.meter.as_ref().is_some_and(|m| m.take()) => Some((Arc::clone(t), Arc::clone(c))),
            _ => None,
        };
        Self { admission, rate, ledger }
    }

    /// The caller's key prefix (`fg-…`, safe to log), if a stored key made this request.
    pub fn key_prefix(&self) -> Option<&str> {
        let caller = self.ledger.as_ref().map(|(_, c)| c)?;
        caller.principal.key().map(|k| k.key.prefix.as_str())
    }

    pub fn settle(&mut self, s: &Settle) {
        let (prompt, cached, completion) = charged(s);
        if let Some(a) = self.admission.take() {
            a.finish(prompt, completion);
        }
        if let Some(r) = self.rate.take() {
            r.finish(prompt + completion);
        }
        let Some((t, caller)) = self.ledger.take() else { return };
        let Some(meter) = &caller.meter else { return };
        let (http_status, error_type, cancelled) = match &s.outcome {
            Outcome::Finished(_) => (200, None, false),
            // 499: the client closed the connection before a response (nginx's convention).
            Outcome::Cancelled => (if s.first_token.is_some() { 200 } else { 499 }, None, true),
            Outcome::Failed { status, code, .. } => (*status, Some((*code).to_owned()), false),
        };
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let row = UsageRecord {
            id: UsageRecord::new_id(),
            request_id: s.request_id.clone(),
            tenant_id: caller.principal.tenant_id().cloned(),
            key_id: caller.principal.key_id().cloned(),
            endpoint: meter.endpoint.to_owned(),
            model_requested: meter.model().to_owned(),
            model_served: Some(s.model_served.clone()),
            backend: Some(s.backend.clone()),
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            latency_ms: ms(meter.started.elapsed()),
            ttft_ms: s.first_token.map(|f| ms(f.saturating_duration_since(meter.started))),
            http_status,
            error_type,
            streamed: s.stream,
            cancelled,
            created_at_ms: meter.started_ms,
        };
        t.ledger.record(row);
    }
}
