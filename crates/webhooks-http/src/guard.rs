//! The SSRF guard: which URLs and addresses a webhook may target.
//!
//! A URL is parsed by the WHATWG rules (so `http://0x7f.1/`, `http://2130706433/` and
//! `http://017700000001/` are all 127.0.0.1, as a browser or reqwest would read them), its host
//! resolved here, and every address checked; one forbidden address refuses the target. IPv6
//! forms that embed an IPv4 address (v4-mapped `::ffff:a.b.c.d`, v4-compatible, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the embedded address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use gatehouse_domain::ports::TargetRejected;
use reqwest::Url;

/// Parses a target URL: absolute, `https` (or `http` unless `require_https`), with a host, no
/// user-info.
///
/// # Errors
///
/// [`TargetRejected::Invalid`].
pub fn parse_target(raw: &str, require_https: bool) -> Result<Url, TargetRejected> {
    let url =
        Url::parse(raw.trim()).map_err(|e| TargetRejected::Invalid(format!("url is not an absolute URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if !require_https => {}
        "http" => return Err(TargetRejected::Invalid("url must use https in production".to_owned())),
        other => return Err(TargetRejected::Invalid(format!("url must be http or https, not {other}"))),
    }
    if url.host().is_none() {
        return Err(TargetRejected::Invalid("url has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetRejected::Invalid("url must not carry credentials".to_owned()));
    }
    Ok(url)
}

/// Why an address is forbidden, or `None` when webhooks may reach it.
#[must_use]
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        return Some("a cloud metadata address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() || a == 0 {
        return Some("an unspecified address");
    }
    if ip.is_private() {
        return Some("a private address");
    }
    if ip.is_link_local() {
        return Some("a link-local address");
    }
    if a == 100 && (64..128).contains(&b) {
        return Some("a shared (carrier-grade NAT) address");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    if ip.is_broadcast() || a >= 240 {
        return Some("a reserved address");
    }
    if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        return Some("a special-purpose address");
    }
    if ip.is_documentation() {
        return Some("a documentation address");
    }
    None
}

/// The IPv4 address an IPv6 address stands for, when it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // v4-compatible ::a.b.c.d (deprecated, still routed by some stacks), but not :: or ::1.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(low());
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(low());
    }
    // 6to4 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_reason(v4);
    }
    let first = ip.segments()[0];
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("a cloud metadata address");
    }
    if first & 0xfe00 == 0xfc00 {
        return Some("a unique-local address");
    }
    if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        return Some("a link-local address");
    }
    if first & 0xff00 == 0xff00 {
        return Some("a multicast address");
    }
    if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        return Some("a documentation address");
    }
    if first == 0x0100 && ip.segments()[1..4] == [0; 3] {
        return Some("a discard-only address");
    }
    None
}

/// Resolves `url`'s host (an IP literal resolves to itself) and checks every address.
///
/// # Errors
///
/// [`TargetRejected::Unresolvable`] when nothing resolves; [`TargetRejected::Forbidden`] when
/// any address is forbidden and `allow_private` is off.
pub async fn resolve_checked(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, TargetRejected> {
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| TargetRejected::Unresolvable(format!("url's host {name} does not resolve: {e}")))?
            .collect(),
        None => return Err(TargetRejected::Invalid("url has no host".to_owned())),
    };
    if addresses.is_empty() {
        return Err(TargetRejected::Unresolvable("url's host resolves to no address".to_owned()));
    }
    if !allow_private {
        for address in &addresses {
            if let Some(reason) = forbidden_reason(address.ip()) {
                return Err(TargetRejected::Forbidden(format!(
                    "url resolves to {}, {reason}; webhooks may not target it",
                    address.ip()
                )));
            }
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(raw: &str) -> bool {
        let Ok(url) = parse_target(raw, false) else { return true };
        matches!(resolve_checked(&url, false).await, Err(TargetRejected::Forbidden(_)))
    }

    #[tokio::test]
    async fn every_ssrf_form_is_refused_after_resolution() {
        for raw in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::10.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[ff02::1]/",
            "http://224.0.0.1/",
            "http://localhost:8080/",
        ] {
            assert!(refused(raw).await, "{raw} must be refused");
        }
    }

    #[tokio::test]
    async fn public_addresses_pass_and_private_ones_pass_when_allowed() {
        for raw in ["https://93.184.216.34/", "https://[2606:4700::1111]/"] {
            let url = parse_target(raw, true).map_err(|e| e.to_string());
            assert!(url.is_ok(), "{raw}: {url:?}");
            if let Ok(url) = url {
                assert!(resolve_checked(&url, false).await.is_ok(), "{raw} must pass");
            }
        }
        if let Ok(url) = parse_target("http://127.0.0.1:9/", false) {
            assert!(resolve_checked(&url, true).await.is_ok());
        }
    }

    #[test]
    fn production_requires_https_and_credentials_and_odd_schemes_are_refused() {
        assert!(parse_target("http://example.com/", true).is_err());
        assert!(parse_target("https://example.com/", true).is_ok());
        assert!(parse_target("ftp://example.com/", false).is_err());
        assert!(parse_target("https://user:pw@example.com/", false).is_err());
        assert!(parse_target("/relative", false).is_err());
    }
}
