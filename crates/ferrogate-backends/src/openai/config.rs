//! `kind = "openai"` settings. Invariant: the API key never prints (Debug redacts it and every
//! extra header value, which may carry credentials too).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use ferrogate_core::stream::StreamTimeouts;
use serde::Deserialize;

use crate::{defaults, validate};

/// An OpenAI-compatible upstream.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root including its version, e.g. `http://127.0.0.1:8000/v1`; requests go to
    /// `{base_url}/chat/completions`, `/completions`, `/models`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key, read when the backend is built.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra headers on every request (e.g. `OpenAI-Organization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// From sending a streamed request to its first event.
    #[serde(default = "defaults::first_token_timeout_ms")]
    pub first_token_timeout_ms: u64,
    /// Longest silence between two events of a stream.
    #[serde(default = "defaults::inter_token_timeout_ms")]
    pub inter_token_timeout_ms: u64,
    /// A whole request, streamed or not.
    #[serde(default = "defaults::total_timeout_ms")]
    pub total_timeout_ms: u64,
    /// Bound of one health check.
    #[serde(default = "defaults::health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// Idle keep-alive connections kept per upstream host.
    #[serde(default = "defaults::pool_idle_per_host")]
    pub pool_idle_per_host: usize,
    /// Speak HTTP/2 from the first byte (`h2c` on `http://`, only `h2` offered on `https://`):
    /// every request to the host is a stream of one shared connection instead of a connection
    /// of its own. For upstreams that accept it (another gateway, Envoy, hyper/axum servers).
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// With `http2_prior_knowledge`: how many HTTP/2 connections requests are spread over, in
    /// turn (each a client of its own). More than one keeps a connection's failure — or the
    /// `h2` crate closing one whose unread small frames pile up — to a share of the streams.
    #[serde(default = "defaults::http2_connections")]
    pub http2_connections: usize,
    /// Served models, reported instead of asking `/models` (for upstreams without it).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// An HTTP(S) proxy for this upstream; environment proxy variables are ignored.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Extra root certificates (PEM) trusted for this upstream's HTTPS, beside the public roots: a
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

impl OpenAiConfig {
    /// A config for `base_url` with every other setting at its default.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            headers: BTreeMap::new(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            first_token_timeout_ms: defaults::first_token_timeout_ms(),
            inter_token_timeout_ms: defaults::inter_token_timeout_ms(),
            total_timeout_ms: defaults::total_timeout_ms(),
            health_timeout_ms: defaults::health_timeout_ms(),
            pool_idle_per_host: defaults::pool_idle_per_host(),
            http2_prior_knowledge: false,
            http2_connections: defaults::http2_connections(),
            models: None,
            proxy: None,
            ca_file: None,
            discover: None,
            discover_interval_ms: crate::discover::default_interval_ms(),
        }
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
        if let Err(e) = self.resolve_api_key() {
            p.push(e);
        }
        p
    }

    /// The key to send: `api_key`, else the value of `api_key_env`.
    pub(crate) fn resolve_api_key(&self) -> Result<Option<String>, String> {
        match (&self.api_key, &self.api_key_env) {
            (Some(_), Some(_)) => Err("set api_key or api_key_env, not both".to_owned()),
            (Some(key), None) => Ok(Some(key.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Ok(Some(key)),
                _ => Err(format!("api_key_env names the environment variable {var}, which is not set")),
            },
            (None, None) => Ok(None),
        }
    }

    pub(crate) fn stream_timeouts(&self) -> StreamTimeouts {
        StreamTimeouts {
            first_token: Duration::from_millis(self.first_token_timeout_ms),
            inter_token: Duration::from_millis(self.inter_token_timeout_ms),
            total: Duration::from_millis(self.total_timeout_ms),
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &validate::redact_url(&self.base_url))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("first_token_timeout_ms", &self.first_token_timeout_ms)
            .field("inter_token_timeout_ms", &self.inter_token_timeout_ms)
            .field("total_timeout_ms", &self.total_timeout_ms)
            .field("health_timeout_ms", &self.health_timeout_ms)
            .field("pool_idle_per_host", &self.pool_idle_per_host)
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field("http2_connections", &self.http2_connections)
            .field("models", &self.models)
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
    fn debug_never_shows_secrets() {
        let mut c = OpenAiConfig::new("http://x/v1");
        c.api_key = Some("sk-very-secret".into());
        c.headers.insert("api-key".into(), "also-secret".into());
        let s = format!("{c:?}");
        assert!(!s.contains("very-secret") && !s.contains("also-secret"), "{s}");
        assert!(s.contains("<redacted>") && s.contains("api-key"));
    }

    #[test]
    fn debug_never_shows_credentials_in_urls() {
        let mut c = OpenAiConfig::new("https://bob:base-secret@x/v1");
        c.proxy = Some("http://alice:proxy-secret@proxy:3128".into());
        let s = format!("{c:?}");
        assert!(!s.contains("base-secret") && !s.contains("proxy-secret") && !s.contains("alice"), "{s}");
        assert!(s.contains("http://redacted@proxy:3128"), "{s}");
        assert_eq!(validate::redact_url("not a url but@secret"), "<redacted>");
        assert_eq!(validate::redact_url("http://plain:8080/v1"), "http://plain:8080/v1");
    }

    #[test]
    fn api_key_sources() {
        let mut c = OpenAiConfig::new("http://x/v1");
        assert_eq!(c.resolve_api_key().unwrap(), None);
        c.api_key_env = Some("FERROGATE_TEST_SURELY_UNSET_VAR".into());
        assert!(c.resolve_api_key().unwrap_err().contains("FERROGATE_TEST_SURELY_UNSET_VAR"));
        c.api_key = Some("k".into());
        assert!(c.resolve_api_key().is_err(), "both set");
        c.api_key_env = None;
        assert_eq!(c.resolve_api_key().unwrap().as_deref(), Some("k"));
    }

    #[test]
    fn defaults_validate() {
        let c: OpenAiConfig = serde_json::from_str(r#"{"base_url":"http://127.0.0.1:8000/v1"}"#).unwrap();
        assert!(c.problems().is_empty());
        assert_eq!((c.inter_token_timeout_ms, c.total_timeout_ms, c.pool_idle_per_host), (60_000, 600_000, 1024));
    }
}
