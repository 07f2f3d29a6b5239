//! `discover = "dns"` on an HTTP backend (`openai`, `ollama`): the host of its `base_url` names a
//! set of servers — a Kubernetes headless Service, a round-robin DNS name — and every address it
//! resolves to is a backend of its own, with the same scheme, port, path and settings. This
//! module is the configuration half, pure: the two settings (`discover`, `discover_interval_ms`,
//! fields of the adapters' own configs so an unknown key stays a typed error), their checks
//! ([`problems`]), and the one backend config for one address ([`BackendConfig::at`]). The
//! resolving, and rebuilding the deployments when the answer changes, is the composition root's.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::BackendConfig;

/// How a backend's servers are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverMode {
    /// Every A/AAAA record of the `base_url` host, resolved again every `discover_interval_ms`.
    Dns,
}

/// Default `discover_interval_ms`.
pub const DEFAULT_INTERVAL_MS: u64 = 5000;

/// `discover_interval_ms` when it is not set.
pub fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}

/// The problems of a backend's discovery settings (the adapter checks the rest beside them).
pub fn problems(discover: Option<DiscoverMode>, interval_ms: u64, base_url: &str) -> Vec<String> {
    if discover.is_none() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if interval_ms < 100 {
        problems.push(format!("discover_interval_ms must be at least 100 (got {interval_ms})"));
    }
    match url::Url::parse(base_url).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Domain(_)) => {}
        _ => problems.push(format!("discover = \"dns\" needs base_url with a host name, not '{base_url}'")),
    }
    problems
}

/// What to resolve for a discovered backend: its host name, port, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
    pub interval: Duration,
}

impl BackendConfig {
    /// The name to resolve, when this backend is discovered by DNS.
    pub fn dns_target(&self) -> Option<DnsTarget> {
        let (base_url, interval) = match self {
            BackendConfig::Openai(c) if c.discover.is_some() => (&c.base_url, c.discover_interval_ms),
            BackendConfig::Ollama(c) if c.discover.is_some() => (&c.base_url, c.discover_interval_ms),
            _ => return None,
        };
        let url = url::Url::parse(base_url).ok()?;
        Some(DnsTarget {
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default()?,
            interval: Duration::from_millis(interval),
        })
    }

    /// This backend's settings for one of the addresses its name resolved to: `base_url` with
    /// the address in place of the host name, discovery off. Unchanged for other kinds.
    pub fn at(&self, addr: SocketAddr) -> BackendConfig {
        let mut one = self.clone();
        if let BackendConfig::Openai(c) = &mut one {
            c.base_url = with_address(&c.base_url, addr);
            c.discover = None;
        }
        if let BackendConfig::Ollama(c) = &mut one {
            c.base_url = with_address(&c.base_url, addr);
            c.discover = None;
        }
        one
    }
}

/// `base_url` with `addr` in place of its host and port (written as it was: no slash added).
fn with_address(base_url: &str, addr: SocketAddr) -> String {
    let Ok(mut url) = url::Url::parse(base_url) else { return base_url.to_owned() };
    if url.set_ip_host(addr.ip()).is_err() || url.set_port(Some(addr.port())).is_err() {
        return base_url.to_owned();
    }
    match base_url.ends_with('/') {
        true => url.as_str().to_owned(),
        false => url.as_str().trim_end_matches('/').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parse(v: serde_json::Value) -> Result<BackendConfig, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn dns_discovery_reads_beside_the_adapters_settings() {
        let c = parse(serde_json::json!({"kind": "openai", "base_url": "http://vllm-headless:8000/v1",
            "discover": "dns", "discover_interval_ms": 2000}))
        .unwrap();
        let target = c.dns_target().unwrap();
        assert_eq!(target, DnsTarget { host: "vllm-headless".into(), port: 8000, interval: Duration::from_secs(2) });
        assert!(c.validate("v").is_empty(), "{:?}", c.validate("v"));
        let plain = parse(serde_json::json!({"kind": "openai", "base_url": "http://vllm:8000/v1"})).unwrap();
        assert_eq!(plain.dns_target(), None);
    }

    #[test]
    fn unknown_fields_are_still_refused_and_bad_settings_named() {
        let e = parse(serde_json::json!({"kind": "openai", "base_url": "http://x/v1", "discovr": "dns"})).unwrap_err();
        assert!(e.contains("discovr"), "{e}");
        assert!(parse(serde_json::json!({"kind": "openai", "base_url": "http://x/v1", "discover": "mdns"})).is_err());
        let c = parse(serde_json::json!({"kind": "openai", "base_url": "http://10.0.0.1:8000/v1",
            "discover": "dns", "discover_interval_ms": 10}))
        .unwrap();
        let problems = c.validate("v");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn one_address_replaces_the_host_and_keeps_port_and_path() {
        let c =
            parse(serde_json::json!({"kind": "openai", "base_url": "http://vllm:8000/v1", "discover": "dns"})).unwrap();
        let base = |c: &BackendConfig| match c {
            BackendConfig::Openai(o) => (o.base_url.clone(), o.discover),
            _ => panic!("not openai"),
        };
        assert_eq!(base(&c.at("127.0.0.2:8000".parse().unwrap())), ("http://127.0.0.2:8000/v1".into(), None));
        assert_eq!(base(&c.at("[::1]:8000".parse().unwrap())), ("http://[::1]:8000/v1".into(), None));
        let ollama =
            parse(serde_json::json!({"kind": "ollama", "base_url": "http://ollama:11434", "discover": "dns"})).unwrap();
        let BackendConfig::Ollama(o) = ollama.at("10.1.2.3:11434".parse().unwrap()) else { panic!() };
        assert_eq!(o.base_url, "http://10.1.2.3:11434");
    }
}
