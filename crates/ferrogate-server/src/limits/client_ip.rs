//! The client's address: the TCP peer, or — only when the peer is a trusted proxy — the nearest
//! address in `X-Forwarded-For` that is not itself a trusted proxy (read right to left, as each
//! proxy appends the address it received from). Without `limits.trusted_proxies` the header is
//! ignored: any client could write it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The peer's address (a router driven without a socket, as in tests, counts as 0.0.0.0).
pub fn peer(req: &Request) -> IpAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client address of `req`, believing `X-Forwarded-For` only from `trusted` peers.
pub fn client_ip(req: &Request, trusted: &[IpNet]) -> IpAddr {
    resolve(peer(req), req.headers(), trusted)
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    // Right to left, skipping garbage (issue 17: one unparsable entry, which any client can put
    // at the left end, used to discard the whole header and make every client behind the proxy
    // share its address): the first address a trusted proxy did not add itself. If all are
    // trusted proxies, the leftmost of them.
    let mut leftmost = None;
    for hop in entries.iter().rev().take(MAX_HOPS).filter_map(|s| parse_hop(s.trim())) {
        if !is_trusted(&hop) {
            return canonical(hop);
        }
        leftmost = Some(hop);
    }
    leftmost.map_or(peer, canonical)
}

/// Entries of `X-Forwarded-For` looked at, from the right: more proxies than this in a chain
/// is not a real deployment.
const MAX_HOPS: usize = 32;

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address as text, formatted on the stack for the access-log line: IPv4 digit by digit
/// (std's `Display` goes through `fmt` for each octet, ~1,700 instructions a line), IPv6 through
/// `Display`. The same text as `Display`.
pub struct IpText {
    buf: [u8; IpText::MAX],
    len: usize,
}

impl IpText {
    /// The longest IPv6 text: eight groups, or six and an IPv4 tail (`ffff:…:255.255.255.255`).
    const MAX: usize = 45;

    pub fn new(ip: IpAddr) -> Self {
        let mut text = Self { buf: [0; Self::MAX], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
                if write!(cursor, "{v6}").is_ok() {
                    text.len = usize::try_from(cursor.position()).unwrap_or(0);
                }
            }
        }
        text
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ip_text_is_display_for_every_octet_and_for_ipv6() {
        for n in 0..=255u8 {
            for ip in [[n, 0, 0, 0], [255, n, 9, 10], [1, 2, n, 99], [100, 10, 1, n], [n, n, n, n]] {
                let ip = IpAddr::from(ip);
                assert_eq!(IpText::new(ip).as_str(), ip.to_string());
            }
        }
        for text in [
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    fn h(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_counts_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(resolve(ip("203.0.113.9"), &h("1.1.1.1"), &trusted), ip("203.0.113.9"), "untrusted peer");
        assert_eq!(resolve(ip("10.0.0.2"), &h("1.1.1.1"), &[]), ip("10.0.0.2"), "no trusted proxies");
        assert_eq!(resolve(ip("10.0.0.2"), &h("1.1.1.1"), &trusted), ip("1.1.1.1"));
        // A client's forged entry sits left of what the trusted proxies appended.
        assert_eq!(resolve(ip("10.0.0.2"), &h("6.6.6.6, 1.1.1.1, 10.0.0.5"), &trusted), ip("1.1.1.1"));
        assert_eq!(resolve(ip("10.0.0.2"), &h("1.1.1.1:4444"), &trusted), ip("1.1.1.1"));
        assert_eq!(resolve(ip("10.0.0.2"), &h("garbage"), &trusted), ip("10.0.0.2"));
        assert_eq!(resolve(ip("::ffff:10.0.0.2"), &h("1.1.1.1"), &trusted), ip("1.1.1.1"));
    }

    /// Issue 17: garbage anywhere in the header discarded all of it (read left to right).
    #[test]
    fn garbage_is_skipped_right_to_left() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ip("10.0.0.2");
        assert_eq!(resolve(proxy, &h("not-an-ip, 1.1.1.1"), &trusted), ip("1.1.1.1"), "client garbage on the left");
        assert_eq!(resolve(proxy, &h("6.6.6.6, 1.1.1.1, ???, 10.0.0.7"), &trusted), ip("1.1.1.1"));
        assert_eq!(resolve(proxy, &h("unknown, 10.0.0.9"), &trusted), ip("10.0.0.9"), "only proxies: the leftmost");
        assert_eq!(resolve(proxy, &h(" , ,"), &trusted), proxy);
        let mut two = h("6.6.6.6");
        two.append("x-forwarded-for", "2.2.2.2, 10.0.0.3".parse().unwrap());
        assert_eq!(resolve(proxy, &two, &trusted), ip("2.2.2.2"), "several header lines read as one list");
    }
}
