//! The client's IP: the socket peer, or what a trusted reverse proxy says it forwarded for.
//!
//! `X-Forwarded-For` and `Forwarded` can be written by anyone, so they are believed only when
//! the peer is one of `server.trusted_proxies`; the client is then the right-most address of
//! the chain that is not itself a trusted proxy (left-most entries are client-controlled).

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use actix_web::http::header::HeaderMap;

/// An IP network: an address and a prefix length. A bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A string that is neither an IP address nor `address/prefix`.
#[derive(Debug, thiserror::Error)]
#[error("not an IP address or CIDR")]
pub struct InvalidCidr;

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, InvalidCidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| InvalidCidr)?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| InvalidCidr)?,
            None => max,
        };
        if prefix > max {
            return Err(InvalidCidr);
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses count as IPv4.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Parses `server.trusted_proxies`, skipping entries that do not parse (settings validation
/// refuses those before this runs).
#[must_use]
pub fn parse_trusted(entries: &[String]) -> Vec<Cidr> {
    entries.iter().filter_map(|e| e.parse().ok()).collect()
}

/// The client IP for a request from `peer` with `headers`.
#[must_use]
pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let chain = forwarded_chain(headers);
    let client = chain.into_iter().rev().map(canonical).find(|ip| !is_trusted(*ip));
    Some(client.unwrap_or(peer))
}

/// Whether a trusted proxy says the request reached it over plain HTTP: the first (client-side)
/// `proto=` of `Forwarded` or, without it, the first value of `X-Forwarded-Proto`. From a peer
/// that is not a trusted proxy the headers mean nothing and the answer is `false`.
#[must_use]
pub fn forwarded_over_plain_http(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> bool {
    let Some(peer) = peer.map(canonical) else { return false };
    if !trusted.iter().any(|cidr| cidr.contains(peer)) {
        return false;
    }
    let forwarded =
        headers.get_all("forwarded").filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim().eq_ignore_ascii_case("proto").then(|| value.trim().trim_matches('"').to_owned())
            })
        });
    let proto = forwarded.or_else(|| {
        let value = headers.get("x-forwarded-proto")?.to_str().ok()?;
        value.split(',').next().map(|first| first.trim().to_owned())
    });
    proto.is_some_and(|proto| proto.eq_ignore_ascii_case("http"))
}

/// The addresses of `Forwarded` (`for=`) or, without it, `X-Forwarded-For`, left to right.
/// An unparsable entry ends the chain there: what lies left of it cannot be trusted either.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<&str> = headers.get_all("forwarded").filter_map(|v| v.to_str().ok()).collect();
    let entries: Vec<String> = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"').to_owned())
                })
            })
            .collect()
    };
    let mut chain = Vec::new();
    for entry in entries.iter().rev() {
        match parse_node(entry) {
            Some(ip) => chain.push(ip),
            None => break,
        }
    }
    chain.reverse();
    chain
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:5678` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    node.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// The rate-limit key of an IP: IPv6 clients are keyed by their /64, which one subscriber
/// usually holds whole.
#[must_use]
pub fn limit_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP")
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(resolve(Some(ip("198.51.100.1")), &h, &[]), Some(ip("198.51.100.1")));
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        let trusted = parse_trusted(&["10.0.0.0/8".to_owned()]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(resolve(Some(ip("10.0.0.1")), &h, &trusted), Some(ip("203.0.113.9")));
        let h = headers(&[("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8::7]:443\"")]);
        assert_eq!(resolve(Some(ip("10.0.0.1")), &h, &trusted), Some(ip("2001:db8::7")));
        assert_eq!(resolve(Some(ip("10.0.0.1")), &HeaderMap::new(), &trusted), Some(ip("10.0.0.1")));
    }

    #[test]
    fn the_forwarded_protocol_is_believed_only_from_a_trusted_proxy() {
        let trusted = parse_trusted(&["10.0.0.0/8".to_owned()]);
        let proxy = Some(ip("10.0.0.1"));
        let plain = headers(&[("x-forwarded-proto", "http")]);
        assert!(forwarded_over_plain_http(proxy, &plain, &trusted));
        assert!(!forwarded_over_plain_http(Some(ip("203.0.113.9")), &plain, &trusted), "untrusted peer");
        assert!(!forwarded_over_plain_http(proxy, &headers(&[("x-forwarded-proto", "https")]), &trusted));
        assert!(forwarded_over_plain_http(proxy, &headers(&[("x-forwarded-proto", "HTTP, https")]), &trusted));
        let forwarded = headers(&[("forwarded", "for=192.0.2.60;proto=http;by=10.0.0.1")]);
        assert!(forwarded_over_plain_http(proxy, &forwarded, &trusted));
        let both = headers(&[("forwarded", "for=192.0.2.60;proto=https"), ("x-forwarded-proto", "http")]);
        assert!(!forwarded_over_plain_http(proxy, &both, &trusted), "Forwarded wins over X-Forwarded-Proto");
        assert!(!forwarded_over_plain_http(proxy, &HeaderMap::new(), &trusted), "no header: not known to be plain");
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "2001:db8::/32".parse().expect("parses");
        assert!(net.contains(ip("2001:db8:1::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!("127.0.0.1".parse::<Cidr>().expect("parses").contains(ip("::ffff:127.0.0.1")));
        assert!("0.0.0.0/0".parse::<Cidr>().expect("parses").contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy".parse::<Cidr>().is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(limit_key(ip("2001:db8:1:2:ffff::1")), limit_key(ip("2001:db8:1:2::9")));
        assert_eq!(limit_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
