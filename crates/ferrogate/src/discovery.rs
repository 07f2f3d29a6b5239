//! Dynamic backends (`discover = "dns"`): a backend whose `base_url` host names several servers
//! (a Kubernetes headless Service) becomes one backend per address it resolves to, named
//! `<backend>@<address>` (`vllm@10.0.4.7:8000`), and the deployments that name the backend name
//! all of them (each with the backend's weight). The reloader resolves the names again every
//! `discover_interval_ms` and, when an answer changed, applies the configuration in force over the
//! new addresses through the same path as a reload (`Reloader::rediscover`): unchanged addresses
//! keep their backend object, breaker and in-flight count; a removed address's backend leaves the
//! deployments for new requests while the requests it holds finish on the snapshot they started
//! on — nothing is dropped.
//!
//! Invariants: a lookup that fails or returns no address keeps the previous answer (a DNS hiccup
//! never empties a deployment); a backend with no answer yet is served by its host name as
//! configured (resolved per connection); the answer is sorted, so only a real change rebuilds.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ferrogate_backends::BackendConfig;
use futures::future::BoxFuture;

use crate::config::Config;

/// Looks a host name up; the real one is [`SystemResolver`], tests put in their own.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (`getaddrinfo` through `tokio::net::lookup_host`): every A and AAAA
/// record, as `/etc/hosts`, the cluster DNS and the search domains give them.
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The addresses each discovered backend resolved to last, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers(BTreeMap<String, Vec<SocketAddr>>);

impl Answers {
    pub fn of(&self, backend: &str) -> &[SocketAddr] {
        self.0.get(backend).map_or(&[], Vec::as_slice)
    }

    /// What changed since `before`, for the log: (backend, added, removed).
    pub fn changes(&self, before: &Answers) -> Vec<(String, Vec<SocketAddr>, Vec<SocketAddr>)> {
        let names = self.0.keys().chain(before.0.keys()).collect::<std::collections::BTreeSet<_>>();
        names
            .into_iter()
            .map(|n| {
                let (now, was) = (self.of(n), before.of(n));
                let added = now.iter().filter(|a| !was.contains(a)).copied().collect();
                let removed = was.iter().filter(|a| !now.contains(a)).copied().collect();
                (n.clone(), added, removed)
            })
            .filter(|(_, a, r): &(String, Vec<_>, Vec<_>)| !a.is_empty() || !r.is_empty())
            .collect()
    }
}

/// The name of the backend for one address of discovered backend `group`.
pub fn member_name(group: &str, addr: SocketAddr) -> String {
    format!("{group}@{addr}")
}

/// The configured backend a built backend comes from: itself, or the discovered backend whose
/// address it serves (`@` is refused in configured names).
pub fn configured_name(name: &str) -> &str {
    name.split_once('@').map_or(name, |(group, _)| group)
}

/// Whether any backend of `cfg` is discovered, and the shortest interval among them.
pub fn interval(cfg: &Config) -> Option<std::time::Duration> {
    cfg.backends.values().filter_map(|b| b.dns_target()).map(|t| t.interval).min()
}

/// Resolves every discovered backend of `cfg`; a lookup that fails or finds nothing keeps its
/// answer in `prev` (logged).
pub async fn resolve_all(cfg: &Config, resolver: &dyn Resolver, prev: &Answers) -> Answers {
    let mut out = BTreeMap::new();
    for (name, b) in &cfg.backends {
        let Some(target) = b.dns_target() else { continue };
        match resolver.resolve(&target.host, target.port).await {
            Ok(mut addrs) if !addrs.is_empty() => {
                addrs.sort();
                addrs.dedup();
                out.insert(name.clone(), addrs);
            }
            Ok(_) => {
                tracing::warn!(backend = %name, host = %target.host, "DNS discovery found no address; keeping the last answer")
            }
            Err(e) => {
                tracing::warn!(backend = %name, host = %target.host, error = %e, "DNS discovery failed; keeping the last answer")
            }
        }
        if !out.contains_key(name) && !prev.of(name).is_empty() {
            out.insert(name.clone(), prev.of(name).to_vec());
        }
    }
    Answers(out)
}

/// `cfg` with each discovered backend that has an answer replaced by one backend per address,
/// and every deployment's backend list and weights following.
pub fn expand(cfg: &Config, answers: &Answers) -> Config {
    let mut out = cfg.clone();
    let members = |name: &str| -> Option<Vec<String>> {
        let addrs = answers.of(name);
        (cfg.backends.get(name)?.dns_target().is_some() && !addrs.is_empty())
            .then(|| addrs.iter().map(|a| member_name(name, *a)).collect())
    };
    out.backends = cfg
        .backends
        .iter()
        .flat_map(|(name, b)| -> Vec<(String, BackendConfig)> {
            match members(name) {
                Some(_) => answers.of(name).iter().map(|a| (member_name(name, *a), b.at(*a))).collect(),
                None => vec![(name.clone(), b.clone())],
            }
        })
        .collect();
    for d in out.settings.deployments.values_mut() {
        let mut backends = Vec::new();
        for b in std::mem::take(&mut d.backends) {
            let Some(names) = members(&b) else {
                backends.push(b);
                continue;
            };
            if let Some(w) = d.weights.remove(&b) {
                d.weights.extend(names.iter().map(|n| (n.clone(), w)));
            }
            backends.extend(names);
        }
        d.backends = backends;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TOML: &str = "[backends.v]\nkind = \"openai\"\nbase_url = \"http://vllm-headless:8000/v1\"\n\
        discover = \"dns\"\ndiscover_interval_ms = 500\n\
        [backends.o]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
        [deployments.m]\nbackends = [\"v\", \"o\"]\nweights = { v = 3 }\n";

    fn answers(addrs: &[&str]) -> Answers {
        Answers([("v".to_owned(), addrs.iter().map(|a| a.parse().unwrap()).collect())].into())
    }

    #[test]
    fn each_address_is_a_backend_of_the_deployments_that_name_it() {
        let cfg = crate::config::load_str(TOML).unwrap();
        assert_eq!(interval(&cfg), Some(std::time::Duration::from_millis(500)));
        let x = expand(&cfg, &answers(&["10.0.0.1:8000", "10.0.0.2:8000"]));
        let names: Vec<&String> = x.backends.keys().collect();
        assert_eq!(names, ["o", "v@10.0.0.1:8000", "v@10.0.0.2:8000"]);
        let d = &x.settings.deployments["m"];
        assert_eq!(d.backends, ["v@10.0.0.1:8000", "v@10.0.0.2:8000", "o"]);
        assert_eq!(d.weights.get("v@10.0.0.2:8000"), Some(&3));
        assert_eq!(configured_name("v@10.0.0.2:8000"), "v");
        assert_eq!(configured_name("o"), "o");
    }

    #[test]
    fn without_an_answer_the_backend_stays_as_configured() {
        let cfg = crate::config::load_str(TOML).unwrap();
        let x = expand(&cfg, &Answers::default());
        assert_eq!(x.settings.deployments["m"].backends, ["v", "o"]);
        assert!(x.backends.contains_key("v"));
    }

    #[tokio::test]
    async fn the_system_resolver_finds_localhost_on_loopback() {
        let addrs = SystemResolver.resolve("localhost", 8000).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8000), "{addrs:?}");
    }

    #[test]
    fn changes_name_what_came_and_went() {
        let (a, b) = (answers(&["10.0.0.1:8000", "10.0.0.2:8000"]), answers(&["10.0.0.2:8000", "10.0.0.3:8000"]));
        let c = b.changes(&a);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].1[0].to_string(), c[0].2[0].to_string()), ("10.0.0.3:8000".into(), "10.0.0.1:8000".into()));
    }
}
