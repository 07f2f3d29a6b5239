//! The usage-ledger row of a finished request, built from its one `RequestRecord` — for requests
//! that reached a backend and for those refused or dropped before — and what it is charged.
//!
//! What a request is charged (docs/TENANCY.md): the provider's usage when it reported one (an
//! explicit 0 stays 0); otherwise, once anything was delivered or the client went away
//! mid-request, the prompt estimate plus the content deltas delivered; a request that failed
//! before producing anything is charged nothing.

use ferrogate_core::tenancy::UsageRecord;
use ferrogate_protocol::openai::Usage;

use crate::request::caller::{Principal, RequestMeter};
use crate::request::record::{Charged, Outcome, RequestRecord};

/// Tokens charged for a request that reached a backend: its reported `usage`, else
/// `prompt_estimate` + `deltas` once it started (first byte delivered or client gone).
pub fn charged(usage: Option<Usage>, started: bool, prompt_estimate: u32, deltas: u32) -> Charged {
    if let Some(u) = usage {
        return Charged {
            prompt: u.prompt_tokens.into(),
            cached: u.cached_tokens().into(),
            completion: u.completion_tokens.into(),
        };
    }
    if started {
        Charged { prompt: prompt_estimate.into(), cached: 0, completion: deltas.into() }
    } else {
        Charged::default()
    }
}

/// The ledger row of `r`, made by `principal` and metered by `meter`.
pub fn usage_row(r: &RequestRecord<'_>, principal: &Principal, meter: &RequestMeter) -> UsageRecord {
    let (error_type, cancelled) = match r.outcome {
        Outcome::Finished(_) | Outcome::Answered => (None, false),
        Outcome::Cancelled => (None, true),
        Outcome::Failed { code, .. } | Outcome::Refused { code, .. } => (Some(code.as_str().to_owned()), false),
    };
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // The name as the client sent it, noted by the plan stage before routing.
    let requested = meter.model();
    UsageRecord {
        id: UsageRecord::new_id(),
        request_id: r.request_id.to_owned(),
        tenant_id: principal.tenant_id().cloned(),
        key_id: principal.key_id().cloned(),
        endpoint: meter.endpoint.to_owned(),
        model_requested: requested.to_owned(),
        model_served: r.model_served.map(str::to_owned),
        backend: r.backend.map(str::to_owned),
        prompt_tokens: r.charged.prompt,
        cached_prompt_tokens: r.charged.cached,
        completion_tokens: r.charged.completion,
        latency_ms: ms(meter.started.elapsed()),
        // From the ledger slot's opening (after auth), as `latency_ms`.
        ttft_ms: r.ttft.map(|t| ms(t.saturating_sub(meter.started.saturating_duration_since(r.started)))),
        http_status: r.status,
        error_type,
        streamed: r.stream && r.dispatched,
        cancelled,
        cache_hit: r.cache_hit,
        created_at_ms: meter.started_ms,
    }
}
