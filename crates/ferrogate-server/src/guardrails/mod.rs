//! The guardrails stage of the pipeline (docs/GUARDRAILS.md): after planning, before admission,
//! a request's input is assessed by `ferrogate_core::guardrails` under the policy of its
//! deployment and tenant; a judge deployment may settle an uncertain injection score; then the
//! request is refused (400 `content_policy_violation` naming the rule), flagged (header, metric,
//! access log), or only logged — and, with `redact_upstream`, its PII is replaced before dispatch.
//!
//! Invariant: nothing here logs, counts or returns the matched text — only closed rule names.

pub mod config;
mod judge;

use std::time::Duration;

use ferrogate_core::guardrails::{self as core, Policy, Scanner, Verdict};
use ferrogate_core::{InferenceRequest, Registry};

use crate::error::ApiError;

pub use config::{GuardrailSettings, GuardrailsConfig};

/// Where findings and judge outcomes are counted (the metrics registry implements it; this
/// module stays below the observability stage).
pub trait Recorder {
    /// `rule` from the core's closed rule sets, `action` a mode's name.
    fn finding(&self, rule: &'static str, action: &'static str);
    /// A judge outcome (a closed set: `judge::Answer::label`).
    fn judge(&self, outcome: &'static str);
}

/// One request as the stage sees it.
pub struct Request<'a> {
    /// To reach the judge deployment.
    pub registry: &'a Registry,
    pub recorder: &'a (dyn Recorder + Sync),
    pub deployment: &'a str,
    /// The caller's tenant name, if a stored key made the request.
    pub tenant: Option<&'a str>,
    /// Assessed, and redacted in place when the policy says so.
    pub req: &'a mut InferenceRequest,
}

/// Held by `AppState` when some policy can be active.
pub struct Guardrails {
    settings: GuardrailSettings,
    scanner: &'static Scanner,
}

impl Guardrails {
    /// `None` when no layer turns anything on: the stage then costs one `Option` check.
    pub fn new(settings: &GuardrailSettings) -> Result<Option<Self>, String> {
        if !settings.any_active() {
            return Ok(None);
        }
        let scanner = Scanner::shared().map_err(|e| format!("guardrails: {e}"))?;
        Ok(Some(Self { settings: settings.clone(), scanner }))
    }

    /// Assesses the request and applies its policy: `Err` when a blocking check found
    /// something; else the `x-ferrogate-guardrails` value when something was flagged.
    pub async fn inspect(&self, r: Request<'_>) -> Result<Option<String>, ApiError> {
        let policy = self.settings.policy(r.deployment, r.tenant);
        if !policy.is_active() {
            return Ok(None);
        }
        let mut verdict = self.scanner.assess(&policy, &r.req.input);
        if let Some(judge) = self.settings.judge_deployment.as_deref()
            && core::uncertain(&policy, verdict.injection_score)
        {
            let text = core::untrusted_text(&r.req.input);
            let limit = Duration::from_millis(self.settings.judge_timeout_ms);
            let answer = judge::ask(r.registry, judge, limit, &text, &r.req.request_id).await;
            r.recorder.judge(answer.label());
            if let Some(injection) = answer.decision() {
                verdict.judged(injection);
            }
        }
        report(&r, &policy, &verdict);
        if let Some(rule) = verdict.blocking_rule(&policy) {
            return Err(ApiError::content_policy(rule));
        }
        if policy.redact_upstream {
            core::redact_input(&self.scanner.pii, &mut r.req.input);
        }
        Ok(verdict.header(&policy))
    }
}

/// Counts every finding with its action and logs the request's findings once.
fn report(r: &Request<'_>, policy: &Policy, v: &Verdict) {
    if v.is_clean() {
        return;
    }
    let actions = v.actions(policy);
    for (rule, action) in &actions {
        r.recorder.finding(rule, action);
    }
    let rules: Vec<String> = actions.iter().map(|(rule, a)| format!("{rule}:{a}")).collect();
    tracing::info!(
        request_id = %r.req.request_id,
        deployment = r.deployment,
        injection_score = v.injection_score,
        findings = %rules.join(","),
        "guardrail findings"
    );
}
