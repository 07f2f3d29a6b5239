//! The admit stage (effects, before any backend is called): the guardrails (docs/GUARDRAILS.md:
//! 400 when a blocking check finds something, PII redacted before dispatch when configured), the
//! key's and tenant's budgets and concurrency (prompt estimate + `max_tokens` reserved), then the
//! rate limits — rules and the keys' rates — in one atomic store call (429 when refused).
//!
//! Caps are applied here, not inside the limiter: a request without `max_tokens` that meets a
//! token rate gets the default, so its reservation is bounded.

use crate::error::ApiError;
use crate::limits::Subject;
use crate::observability::cx::Mark;
use crate::request::plan::Plan;
use crate::settle::Reservations;
use crate::state::AppState;

pub async fn admit(st: &AppState, plan: &mut Plan) -> Result<Reservations, ApiError> {
    let who = plan.caller.as_ref().and_then(|c| c.principal.key()).cloned();
    if let Some(g) = &st.guardrails {
        let tenant = who.as_ref().map(|k| k.tenant.name.as_str());
        plan.guardrails = g
            .inspect(crate::guardrails::Request {
                registry: &st.registry,
                recorder: &st.obs.metrics,
                deployment: &plan.deployment.name,
                tenant,
                req: &mut plan.req,
            })
            .await?;
    }
    let mut held = Reservations::default();
    if let (Some(t), Some(k)) = (&st.tenancy, &who) {
        held.budget = t.admit(k, &plan.shown, plan.prompt_estimate, plan.req.params.max_tokens).await?;
    }
    // === rate limits (docs/GOVERNANCE.md) ===
    if let Some(rl) = plan.limits.clone() {
        let subject = Subject { who: who.as_deref(), deployment: &plan.deployment.name, ip: rl.ip };
        let mut checks = st.limits.checks(&subject);
        if checks.counts_tokens() {
            let max = *plan.req.params.max_tokens.get_or_insert(st.default_max_tokens());
            checks.set_tokens(u64::from(plan.prompt_estimate) + u64::from(max));
        }
        held.rate = st.limits.acquire(&subject, checks, &rl.headers).await?;
    }
    plan.obs.mark(Mark::Admitted);
    Ok(held)
}
