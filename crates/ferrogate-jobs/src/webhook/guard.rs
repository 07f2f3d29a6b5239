//! The SSRF guard: webhook URLs are operator-given but their DNS is not ours, so every
//! destination address is checked at connect time, in the resolver the HTTP client uses — the
//! client connects to exactly the addresses checked, leaving no window for DNS rebinding.
//!
//! Refused unless `allow_private_destinations`: loopback, private (RFC 1918, ULA fc00::/7),
//! link-local (169.254/16 — cloud metadata — and fe80::/10), CGNAT (100.64/10), unspecified,
//! "this network" (0/8), broadcast and multicast; IPv4-mapped IPv6 addresses are judged as IPv4.
//! A name with any refused address is refused as a whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A destination the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook destination {0} is not a public address (set [webhooks] allow_private_destinations to allow it)")]
pub struct RefusedDestination(pub IpAddr);

/// Whether `ip` is refused unless private destinations are allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Checks an address of a URL that names an IP literal (the resolver is not asked for those).
pub fn check_literal(ip: IpAddr, allow_private: bool) -> Result<(), RefusedDestination> {
    if !allow_private && is_forbidden(ip) { Err(RefusedDestination(ip)) } else { Ok(()) }
}

/// Parses a webhook URL and checks an IP-literal host (the resolver is only asked for names).
/// The URL parser normalizes the tricky spellings first (`0x7f000001`, `2130706433`,
/// `127.1`, `[::ffff:127.0.0.1]`), so they are judged as the addresses they are.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("invalid webhook url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("webhook url scheme '{}' is not http or https", url.scheme()));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("webhook url has no host".into()),
    };
    if let Some(ip) = literal {
        check_literal(ip, allow_private).map_err(|e| e.to_string())?;
    }
    Ok(url)
}

/// The HTTP client's resolver: the system's (`getaddrinfo` on a blocking thread), then the guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Skip the guard (tests, private deployments).
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allow_private && is_forbidden(a.ip())) {
                return Err(Box::new(RefusedDestination(bad.ip())) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_friends_are_forbidden() {
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_forbidden(ip(s)), "{s}");
            assert!(check_literal(ip(s), false).is_err() && check_literal(ip(s), true).is_ok(), "{s}");
        }
    }

    #[test]
    fn urls_with_tricky_private_hosts_are_refused() {
        for url in [
            "http://127.0.0.1/x",
            "http://0x7f000001/x",
            "http://2130706433/x",
            "http://127.1/x",
            "http://[::1]:8080/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1:9/x",
            "http://[fd00::1]/x",
        ] {
            let err = check_url(url, false).unwrap_err();
            assert!(err.contains("not a public address"), "{url}: {err}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/x", false).is_ok(), "names go to the resolver");
        assert!(check_url("https://93.184.215.14/x", false).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn public_addresses_pass() {
        for s in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "100.63.255.255", "2606:4700::1111", "fec0::1"] {
            assert!(!is_forbidden(ip(s)), "{s}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_loopback() {
        let guarded = GuardedResolver { allow_private: false };
        let refused = guarded.resolve("localhost".parse().unwrap()).await;
        let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not a public address"), "{err}");
        let open = GuardedResolver { allow_private: true };
        let addrs: Vec<SocketAddr> = open.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
