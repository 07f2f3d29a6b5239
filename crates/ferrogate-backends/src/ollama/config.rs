//! `kind = "ollama"` settings. Invariant: nothing here can make Ollama reload a model per
//! request — load-time options (`num_ctx`, …) are not configurable per request at all; set them
//! in the Modelfile. Debug redacts header values (they may carry credentials).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ferrogate_core::stream::StreamTimeouts;
use serde::Deserialize;

use crate::{defaults, validate};

/// A native Ollama server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaConfig {
    /// The server root; requests go to `{base_url}/api/…`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Extra headers on every request (e.g. for an authenticating proxy in front of Ollama).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// From sending a streamed request to its first line (includes Ollama loading the model).
    #[serde(default = "defaults::first_token_timeout_ms")]
    pub first_token_timeout_ms: u64,
    /// Longest silence between two lines of a stream.
    #[serde(default = "defaults::inter_token_timeout_ms")]
    pub inter_token_timeout_ms: u64,
    /// A whole request, streamed or not.
    #[serde(default = "defaults::total_timeout_ms")]
    pub total_timeout_ms: u64,
    /// Bound of one health check.
    #[serde(default = "defaults::health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// Idle keep-alive connections kept to the server.
    #[serde(default = "defaults::pool_idle_per_host")]
    pub pool_idle_per_host: usize,
    /// Speak HTTP/2 from the first byte (see the `openai` kind's `http2_prior_knowledge`).
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// With `http2_prior_knowledge`: HTTP/2 connections requests are spread over (see `openai`).
    #[serde(default = "defaults::http2_connections")]
    pub http2_connections: usize,
    /// How long Ollama keeps the model loaded after a request: a Go duration (`"30m"`, `"1h"`)
    /// or seconds (`"300"`, `"-1"` = forever). Unset: Ollama's own default (5 minutes).
    #[serde(default)]
    pub keep_alive: Option<String>,
    /// Models this backend must serve: health is `NotReady` while one is missing from
    /// `/api/tags` (not pulled). Unset: health only checks that Ollama answers.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Also require each of `models` to be loaded in memory (`/api/ps`). Off by default:
    /// Ollama loads models lazily on the first request, so "not loaded" is normal at start and
    /// after `keep_alive` expires; turn it on only when something keeps the models warm.
    #[serde(default)]
    pub require_loaded: bool,
    /// An HTTP(S) proxy for this server; environment proxy variables are ignored.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Extra root certificates (PEM) trusted for this server's HTTPS, beside the public roots: a
    /// private CA. There is no switch to skip verification.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// `discover = "dns"`: every address the `base_url` host resolves to is a backend of its own
    /// (`crate::discover`).
    #[serde(default)]
    pub discover: Option<crate::discover::DiscoverMode>,
    /// How often a discovered host name is resolved again.
    #[serde(default = "crate::discover::default_interval_ms")]
    pub discover_interval_ms: u64,
}

fn default_base_url() -> String {
    "http://127.0.0.1:11434".to_owned()
}

impl Default for OllamaConfig {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
            headers: BTreeMap::new(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            first_token_timeout_ms: defaults::first_token_timeout_ms(),
            inter_token_timeout_ms: defaults::inter_token_timeout_ms(),
            total_timeout_ms: defaults::total_timeout_ms(),
            health_timeout_ms: defaults::health_timeout_ms(),
            pool_idle_per_host: defaults::pool_idle_per_host(),
            http2_prior_knowledge: false,
            http2_connections: defaults::http2_connections(),
            keep_alive: None,
            models: None,
            require_loaded: false,
            proxy: None,
            ca_file: None,
            discover: None,
            discover_interval_ms: crate::discover::default_interval_ms(),
        }
    }
}

impl OllamaConfig {
    /// A config for `base_url` with every other setting at its default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), ..Self::default() }
    }

    /// Every problem of this config (see `BackendConfig::validate`).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        validate::base_url(&self.base_url, &mut p);
        validate::timeouts(
            &[
                ("connect_timeout_ms", self.connect_timeout_ms),
                ("first_token_timeout_ms", self.first_token_timeout_ms),
                ("inter_token_timeout_ms", self.inter_token_timeout_ms),
                ("total_timeout_ms", self.total_timeout_ms),
                ("health_timeout_ms", self.health_timeout_ms),
            ],
            &mut p,
        );
        validate::headers(&self.headers, &mut p);
        validate::http2_connections(self.http2_connections, &mut p);
        validate::proxy(self.proxy.as_deref(), &mut p);
        validate::ca_file(self.ca_file.as_deref(), &mut p);
        validate::models(self.models.as_deref(), &mut p);
        if self.require_loaded && self.models.is_none() {
            p.push("require_loaded needs models (which models must be loaded?)".to_owned());
        }
        if let Some(k) = self.keep_alive.as_deref().filter(|k| !is_keep_alive(k)) {
            p.push(format!("keep_alive '{k}' is neither seconds nor a duration like \"30m\" or \"1h30m\""));
        }
        p
    }

    pub(crate) fn stream_timeouts(&self) -> StreamTimeouts {
        StreamTimeouts {
            first_token: Duration::from_millis(self.first_token_timeout_ms),
            inter_token: Duration::from_millis(self.inter_token_timeout_ms),
            total: Duration::from_millis(self.total_timeout_ms),
        }
    }
}

/// Seconds (`"300"`, `"-1"`) or a Go duration (`"1h30m"`, `"-1m"`, `"1.5h"`).
pub(crate) fn is_keep_alive(s: &str) -> bool {
    let s = s.trim();
    let body = s.strip_prefix('-').unwrap_or(s);
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    is_go_duration(body)
}

/// One or more `<number><unit>` pairs, units ns, us, µs, ms, s, m, h.
fn is_go_duration(mut s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    while !s.is_empty() {
        let digits = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        if digits == 0 || s[..digits].parse::<f64>().is_err() {
            return false;
        }
        s = &s[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| s.starts_with(**u)) else {
            return false;
        };
        s = &s[unit.len()..];
    }
    true
}

impl fmt::Debug for OllamaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OllamaConfig")
            .field("base_url", &validate::redact_url(&self.base_url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("first_token_timeout_ms", &self.first_token_timeout_ms)
            .field("inter_token_timeout_ms", &self.inter_token_timeout_ms)
            .field("total_timeout_ms", &self.total_timeout_ms)
            .field("health_timeout_ms", &self.health_timeout_ms)
            .field("pool_idle_per_host", &self.pool_idle_per_host)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field("http2_connections", &self.http2_connections)
            .field("keep_alive", &self.keep_alive)
            .field("models", &self.models)
            .field("require_loaded", &self.require_loaded)
            .field("proxy", &self.proxy.as_deref().map(validate::redact_url))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keep_alive_forms() {
        for ok in ["30m", "1h30m", "1.5h", "300", "-1", "0", "-1m", "10s"] {
            assert!(is_keep_alive(ok), "{ok}");
        }
        for bad in ["", "-", "forever", "m30", "1d", "1h-", "1..2s"] {
            assert!(!is_keep_alive(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_and_problems() {
        let c: OllamaConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:11434");
        assert!(c.problems().is_empty());
        let c: OllamaConfig =
            serde_json::from_str(r#"{"keep_alive":"soon","require_loaded":true,"inter_token_timeout_ms":0}"#).unwrap();
        assert_eq!(c.problems().len(), 3, "{:?}", c.problems());
        assert!(serde_json::from_str::<OllamaConfig>(r#"{"num_ctx":4096}"#).is_err());
    }
}
