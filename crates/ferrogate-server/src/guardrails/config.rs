//! `[guardrails]`: global modes and threshold, an optional judge deployment, per-tenant
//! overrides (`[guardrails.tenants.NAME]`, keyed by tenant name: tenants live in the store, and
//! a config table needs no schema change); per-deployment overrides live in
//! `[deployments.X.guardrails]`. Checked with every problem listed.

use std::collections::BTreeMap;

use ferrogate_core::guardrails::policy::DEFAULT_THRESHOLD;
use ferrogate_core::guardrails::{Mode, Overrides, Policy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    /// Prompt-injection check: off | log | flag | block.
    pub injection: Mode,
    /// PII check: off | log | flag | block.
    pub pii: Mode,
    /// Replace PII in what is sent upstream (`[EMAIL]`, `[CARD]`, …).
    pub redact_upstream: bool,
    /// Injection score (0–1] at or above which the injection check triggers.
    pub injection_threshold: f32,
    /// A deployment asked to classify prompts whose score is near the threshold.
    pub judge_deployment: Option<String>,
    /// Bound of one judge call; on timeout or error the heuristic decides.
    pub judge_timeout_ms: u64,
    /// Tenant name → overrides.
    pub tenants: BTreeMap<String, Overrides>,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            injection: Mode::Off,
            pii: Mode::Off,
            redact_upstream: false,
            injection_threshold: DEFAULT_THRESHOLD,
            judge_deployment: None,
            judge_timeout_ms: 2000,
            tenants: BTreeMap::new(),
        }
    }
}

/// The checked settings the server runs with.
#[derive(Debug, Clone, Default)]
pub struct GuardrailSettings {
    pub global: Policy,
    pub deployments: BTreeMap<String, Overrides>,
    pub tenants: BTreeMap<String, Overrides>,
    pub judge_deployment: Option<String>,
    pub judge_timeout_ms: u64,
}

/// Checks `raw` against the deployments (`name` → its `guardrails` table, if any).
pub fn check(
    raw: GuardrailsConfig,
    deployments: &BTreeMap<String, Option<Overrides>>,
    errs: &mut Vec<String>,
) -> GuardrailSettings {
    let global = Overrides {
        injection: Some(raw.injection),
        pii: Some(raw.pii),
        redact_upstream: Some(raw.redact_upstream),
        injection_threshold: Some(raw.injection_threshold),
    };
    errs.extend(global.problems("guardrails"));
    for (name, o) in deployments.iter().filter_map(|(n, o)| Some((n, o.as_ref()?))) {
        errs.extend(o.problems(&format!("deployments.{name}.guardrails")));
    }
    for (name, o) in &raw.tenants {
        errs.extend(o.problems(&format!("guardrails.tenants.{name}")));
    }
    if let Some(j) = raw.judge_deployment.as_deref().filter(|j| !deployments.contains_key(*j)) {
        let known: Vec<&str> = deployments.keys().map(String::as_str).collect();
        errs.push(format!("guardrails.judge_deployment: no deployment named '{j}' (known: {})", known.join(", ")));
    }
    if raw.judge_timeout_ms == 0 {
        errs.push("guardrails.judge_timeout_ms must be greater than 0".into());
    }
    GuardrailSettings {
        global: Policy::default().with(Some(&global)),
        deployments: deployments.iter().filter_map(|(n, o)| Some((n.clone(), (*o)?))).collect(),
        tenants: raw.tenants,
        judge_deployment: raw.judge_deployment,
        judge_timeout_ms: raw.judge_timeout_ms,
    }
}

impl GuardrailSettings {
    /// The policy of a request: global, then its deployment's table, then its tenant's.
    pub fn policy(&self, deployment: &str, tenant: Option<&str>) -> Policy {
        let tenant = tenant.and_then(|t| self.tenants.get(t));
        self.global.with(self.deployments.get(deployment)).with(tenant)
    }

    /// Whether any request can need guardrail work (else the pipeline skips the stage at once).
    pub fn any_active(&self) -> bool {
        let layers = self.deployments.values().chain(self.tenants.values());
        self.global.is_active() || layers.clone().any(|o| Policy::default().with(Some(o)).is_active())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_problem_is_listed_and_layers_resolve() {
        let raw: GuardrailsConfig = toml_de(
            "injection = \"block\"\ninjection_threshold = 1.5\njudge_deployment = \"nope\"\njudge_timeout_ms = 0\n[tenants.acme]\ninjection = \"off\"\ninjection_threshold = -1.0\n",
        );
        let deployments = BTreeMap::from([
            ("m".to_owned(), Some(Overrides { pii: Some(Mode::Flag), ..Overrides::default() })),
            ("n".to_owned(), None),
        ]);
        let mut errs = Vec::new();
        let s = check(raw, &deployments, &mut errs);
        let all = errs.join("\n");
        for needle in
            ["guardrails.injection_threshold", "guardrails.tenants.acme", "judge_deployment", "judge_timeout_ms"]
        {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        assert_eq!(errs.len(), 4, "{all}");
        assert_eq!(s.policy("m", None).pii, Mode::Flag);
        assert_eq!(s.policy("m", Some("acme")).injection, Mode::Off);
        assert_eq!(s.policy("n", Some("other")).injection, Mode::Block);
        assert!(s.any_active());
    }

    fn toml_de(s: &str) -> GuardrailsConfig {
        use figment::providers::{Format, Toml};
        figment::Figment::new().merge(Toml::string(s)).extract().unwrap()
    }
}
