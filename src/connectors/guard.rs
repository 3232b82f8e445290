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
            // An IPv4 address written as IPv6 (::ffff:a.b.c.d, or NAT64 64:ff9b::a.b.c.d) reaches the IPv4 host.
            if let Some(v4) = v6.to_ipv4_mapped().or_else(|| nat64(v6)) {
                return refusal_v4(v4);
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

fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
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
    fn loopback_private_and_public_addresses_are_allowed() {
        for ip in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.0.10",
            "93.184.216.34",
            "2606:4700::1",
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
