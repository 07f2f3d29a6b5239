//! What a guardrail finding does, and how the settings of the gateway, a deployment and a tenant
//! combine: each layer overrides the one before it (global → deployment → tenant), key by key.
//!
//! Invariant: a resolved [`Policy`] is complete — every check has a mode and the threshold is in
//! (0, 1] — because the layers are validated at config load.

use serde::{Deserialize, Serialize};

/// What a check does when it finds something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not evaluated at all.
    #[default]
    Off,
    /// Evaluated; findings go to the log (and metrics) only.
    Log,
    /// As `log`, and the response carries `x-ferrogate-guardrails`.
    Flag,
    /// The request is refused with 400 `content_policy_violation` naming the rule.
    Block,
}

impl Mode {
    /// The metrics `action` label and the config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Log => "log",
            Mode::Flag => "flag",
            Mode::Block => "block",
        }
    }
}

/// The default injection score at or above which a request counts as an injection.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// The guardrails that apply to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub injection: Mode,
    pub pii: Mode,
    /// Replace PII in what is sent upstream (independent of `pii`, which decides reporting).
    pub redact_upstream: bool,
    /// Injection score at or above which the injection check triggers.
    pub injection_threshold: f32,
}

impl Default for Policy {
    fn default() -> Self {
        Self { injection: Mode::Off, pii: Mode::Off, redact_upstream: false, injection_threshold: DEFAULT_THRESHOLD }
    }
}

/// One layer of settings (a deployment's or a tenant's); unset keys keep the layer below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub injection: Option<Mode>,
    #[serde(default)]
    pub pii: Option<Mode>,
    #[serde(default)]
    pub redact_upstream: Option<bool>,
    #[serde(default)]
    pub injection_threshold: Option<f32>,
}

impl Overrides {
    /// Problems with this layer's values, prefixed with `at` (`guardrails.tenants.acme`).
    pub fn problems(&self, at: &str) -> Vec<String> {
        match self.injection_threshold {
            Some(t) if !(t > 0.0 && t <= 1.0) => vec![format!("{at}.injection_threshold must be in (0, 1], got {t}")],
            _ => Vec::new(),
        }
    }
}

impl Policy {
    /// This policy with `layer`'s set keys applied.
    pub fn with(self, layer: Option<&Overrides>) -> Policy {
        let Some(o) = layer else { return self };
        Policy {
            injection: o.injection.unwrap_or(self.injection),
            pii: o.pii.unwrap_or(self.pii),
            redact_upstream: o.redact_upstream.unwrap_or(self.redact_upstream),
            injection_threshold: o.injection_threshold.unwrap_or(self.injection_threshold),
        }
    }

    /// Whether any work is needed for a request under this policy.
    pub fn is_active(&self) -> bool {
        self.injection != Mode::Off || self.pii != Mode::Off || self.redact_upstream
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_key_by_key() {
        let global = Policy { injection: Mode::Flag, pii: Mode::Log, ..Policy::default() };
        let deployment =
            Overrides { injection: Some(Mode::Block), redact_upstream: Some(true), ..Overrides::default() };
        let tenant = Overrides { injection: Some(Mode::Off), ..Overrides::default() };
        let p = global.with(Some(&deployment)).with(Some(&tenant));
        assert_eq!((p.injection, p.pii, p.redact_upstream), (Mode::Off, Mode::Log, true));
        assert_eq!(global.with(Some(&deployment)).injection, Mode::Block);
        assert_eq!(global.with(None), global);
        assert!(p.is_active() && !Policy::default().is_active());
    }

    #[test]
    fn thresholds_outside_the_unit_interval_are_problems() {
        let bad = Overrides { injection_threshold: Some(0.0), ..Overrides::default() };
        assert_eq!(bad.problems("guardrails").len(), 1);
        let nan = Overrides { injection_threshold: Some(f32::NAN), ..Overrides::default() };
        assert_eq!(nan.problems("x").len(), 1);
        assert!(Overrides { injection_threshold: Some(1.0), ..Overrides::default() }.problems("x").is_empty());
    }
}
