//! Where outbound calls may go (webhook deliveries and forwards). A URL chosen by a user could aim at the
//! cloud metadata service or other link-local endpoints of the host; those are refused (for webhooks,
//! unless `webhook_allow_link_local` is set). Loopback and private networks stay allowed (development, and
//! receivers inside the operator's network). The check runs on the addresses the connection really
//! uses: IP literals before sending, host names inside the HTTP client's resolver, so that a name that
//! resolves to a public address when checked and to a metadata address when used (DNS rebinding)
//! cannot slip through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Cloud metadata services outside 169.254.0.0/16 (which is link-local as a whole).
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud
];
const METADATA_V6: [Ipv6Addr; 1] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS (IMDS over IPv6)
];

/// Why `ip` is refused as a destination unless link-local is allowed, or `None` if it is fine.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                return Some("the unspecified address");
            }
            // An IPv4 address carried inside an IPv6 one (mapped, compatible, translated, 6to4,
            // NAT64, Teredo, ISATAP) may reach the IPv4 host: refused if that host would be.
            if let Some(why) = embedded_v4(v6).into_iter().find_map(refusal_v4) {
                return Some(why);
            }
            if METADATA_V6.contains(&v6) {
                Some("a cloud metadata address")
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else {
                None
            }
        }
    }
}

fn refusal_v4(v4: Ipv4Addr) -> Option<&'static str> {
    if v4 == Ipv4Addr::new(169, 254, 169, 254) || METADATA_V4.contains(&v4) {
        Some("a cloud metadata address")
    } else if v4.is_link_local() {
        Some("a link-local address")
    } else if v4.is_unspecified() || v4.is_broadcast() {
        Some("not a host address")
    } else {
        None
    }
}

/// Every IPv4 address that `v6` may stand for through a transition mechanism, where it may be routed
/// (by the host, a relay or a translator) to that IPv4 address.
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let b = v6.octets();
    let at = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
    let mut found = Vec::new();
    // ::a.b.c.d (IPv4-compatible) and ::ffff:a.b.c.d (IPv4-mapped).
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        found.push(at(12));
    }
    // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765).
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        found.push(at(12));
    }
    // 6to4, 2002:AABB:CCDD::/48 (RFC 3056).
    if s[0] == 0x2002 {
        found.push(at(2));
    }
    // Teredo, 2001:0::/32 (RFC 4380): the server, and the client with its bits inverted.
    if s[..2] == [0x2001, 0] {
        found.push(at(4));
        found.push(Ipv4Addr::from(!u32::from(at(12))));
    }
    // NAT64 with the well-known prefix 64:ff9b::/96 (RFC 6052).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        found.push(at(12));
    }
    // Local-use NAT64, 64:ff9b:1::/48 (RFC 8215): a translator's prefix there may be /48, /56, /64
    // or /96, each placing the IPv4 address differently (RFC 6052, byte 8 is always skipped).
    // The layouts the address does not use read as zeros there: those are not candidates.
    if s[..3] == [0x64, 0xff9b, 1] {
        let layouts = [
            Ipv4Addr::new(b[6], b[7], b[9], b[10]),
            Ipv4Addr::new(b[7], b[9], b[10], b[11]),
            Ipv4Addr::new(b[9], b[10], b[11], b[12]),
            at(12),
        ];
        found.extend(layouts.into_iter().filter(|v4| !v4.is_unspecified()));
    }
    // ISATAP interface identifiers, ...:0:5efe:a.b.c.d and ...:200:5efe:a.b.c.d (RFC 5214).
    if (s[4] == 0 || s[4] == 0x0200) && s[5] == 0x5efe {
        found.push(at(12));
    }
    found
}

/// Whether `url` names a loopback host (`localhost`, 127.0.0.0/8, `::1`, or 127/8 written as IPv6):
/// the only hosts an `http://` URL carrying secrets or card data may name, since the bytes never
/// leave the machine.
pub fn is_loopback_url(url: &Url) -> bool {
    match literal_ip(url) {
        Some(IpAddr::V4(v4)) => v4.is_loopback(),
        Some(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => url
            .host_str()
            .is_some_and(|name| name.eq_ignore_ascii_case("localhost")),
    }
}

/// An outbound base URL that will carry secrets or card data: `https://`, or `http://` only to a
/// loopback host; with a host and no credentials.
pub fn check_secure_url(url: &str) -> Result<Url, String> {
    let parsed = check_destination(url)?;
    if parsed.scheme() == "http" && !is_loopback_url(&parsed) {
        return Err(
            "must be https:// (http:// only for a loopback host: localhost, 127.0.0.0/8, ::1)"
                .into(),
        );
    }
    Ok(parsed)
}

/// Refuses `ip` unless it is fine or link-local addresses are allowed.
pub fn check_ip(ip: IpAddr, allow_link_local: bool) -> Result<(), String> {
    match refusal(ip) {
        Some(why) if !allow_link_local => Err(format!(
            "the destination {ip} is {why}; set webhook_allow_link_local to allow it"
        )),
        _ => Ok(()),
    }
}

/// A webhook URL as registered: absolute `http` or `https` with a host, no credentials.
pub fn check_destination(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".into());
    }
    if parsed.host_str().map_or(true, str::is_empty) {
        return Err("has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(parsed)
}

/// The IP address a URL names literally, if it does (the resolver never sees those).
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The HTTP client's resolver: resolves with the system's resolver and refuses a name if any of its
/// addresses is refused, so that the connection can only go to checked addresses.
pub struct GuardedResolver {
    pub allow_link_local: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_link_local;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                check_ip(addr.ip(), allow)
                    .map_err(|m| std::io::Error::new(std::io::ErrorKind::PermissionDenied, m))?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        refusal(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_in_every_spelling() {
        for ip in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "100.100.100.200",
            "0.0.0.0",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn every_ipv6_form_embedding_a_refused_ipv4_address_is_refused() {
        for ip in [
            "::a9fe:a9fe",                          // IPv4-compatible
            "::169.254.169.254",                    // the same, written with a dotted quad
            "::ffff:a9fe:a9fe",                     // IPv4-mapped
            "::ffff:0:a9fe:a9fe",                   // IPv4-translated
            "2002:a9fe:a9fe::1",                    // 6to4
            "64:ff9b::a9fe:a9fe",                   // NAT64, well-known prefix
            "64:ff9b:1::a9fe:a9fe",                 // local-use NAT64, /96
            "64:ff9b:1:a9fe:a9:fe00::",             // local-use NAT64, /48
            "64:ff9b:1:00a9:00fe:a9fe::",           // local-use NAT64, /56
            "64:ff9b:1:0:a9:fea9:fe00:0",           // local-use NAT64, /64
            "2001:0:a9fe:a9fe::1",                  // Teredo server
            "2001:0:4136:e378:8000:63bf:5601:5601", // Teredo client 169.254.169.254, inverted
            "2001:db8::5efe:a9fe:a9fe",             // ISATAP
            "::ffff:0:6464:64c8",                   // Alibaba's metadata address, translated
            "2002:c000:00c0::",                     // Oracle's, via 6to4
            "::ffff:0:0:0",                         // 0.0.0.0, translated
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn loopback_private_and_public_addresses_are_allowed() {
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.0.10",
            "93.184.216.34",
            "2606:4700::1",
            "2002:5db8:d822::1",
            "64:ff9b::5db8:d822",
            "64:ff9b:1::5db8:d822",
            "::ffff:0:a01:203",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn the_setting_lets_link_local_through() {
        let ip: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(check_ip(ip, false).is_err());
        assert!(check_ip(ip, true).is_ok());
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(check_destination("https://example.com/hook").is_ok());
        assert!(check_destination("ftp://example.com/").is_err());
        assert!(check_destination("http://user:pw@example.com/").is_err());
        assert!(check_destination("not a url").is_err());
        let url = check_destination("http://[fe80::1]:8080/x").unwrap();
        assert_eq!(literal_ip(&url), Some("fe80::1".parse().unwrap()));
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn http_is_only_for_loopback_hosts() {
        for ok in [
            "https://api.stripe.com",
            "http://localhost:12111",
            "http://LOCALHOST/",
            "http://127.0.0.1:8080",
            "http://127.1.2.3/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(check_secure_url(ok).is_ok(), "{ok} should be accepted");
        }
        for refused in [
            "http://api.stripe.com",
            "http://10.0.0.5/",
            "http://localhost.evil.test/",
            "http://127.0.0.1.nip.io/",
            "http://[::2]/",
            "ftp://localhost/",
            "https://user:pw@api.stripe.com",
        ] {
            assert!(
                check_secure_url(refused).is_err(),
                "{refused} should be refused"
            );
        }
    }
}
