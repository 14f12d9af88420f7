//! Address checks for URLs we will later connect to (webhook targets, source
//! URLs). At intake we can only judge what the URL spells out: a literal IP or
//! a `localhost`-style name. Delivery resolves the name and checks again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Longest URL accepted anywhere.
pub const MAX_URL_LEN: usize = 2048;

/// What a deployment allows for outbound targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    /// Allow `http://` (local mode); otherwise only `https://`.
    pub allow_http: bool,
    /// Allow loopback targets (`127.0.0.0/8`, `::1`, `localhost`) for local
    /// receivers. Never set in a deployed stack.
    pub allow_loopback: bool,
}

/// Why a URL was refused. The message names the rule, never echoing secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("must be an absolute URL")]
    NotAbsolute,
    #[error("must use https{}", if *.0 { " or http" } else { "" })]
    Scheme(bool),
    #[error("must not contain a user name or password")]
    UserInfo,
    #[error("must have a host")]
    NoHost,
    #[error("must not point at a loopback, private, link-local or otherwise non-public address")]
    NonPublic,
}

/// Validates a URL we will connect to later.
pub fn check_target_url(raw: &str, policy: TargetPolicy, https_only: bool) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlError::NotAbsolute);
    }
    let url = Url::parse(raw).map_err(|_| UrlError::NotAbsolute)?;
    let http_ok = policy.allow_http || !https_only;
    match url.scheme() {
        "https" => {}
        "http" if http_ok => {}
        _ => return Err(UrlError::Scheme(http_ok)),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::UserInfo);
    }
    match url.host() {
        None => return Err(UrlError::NoHost),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
        Some(Host::Domain(name)) => check_name(name, policy)?,
    }
    Ok(url)
}

fn check_ip(ip: IpAddr, policy: TargetPolicy) -> Result<(), UrlError> {
    if is_public_ip(ip) || (policy.allow_loopback && is_loopback(ip)) {
        Ok(())
    } else {
        Err(UrlError::NonPublic)
    }
}

fn check_name(name: &str, policy: TargetPolicy) -> Result<(), UrlError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let loopback_name = name == "localhost"
        || name.ends_with(".localhost")
        || name == "localhost.localdomain"
        || name == "ip6-localhost"
        || name == "ip6-loopback";
    if loopback_name {
        return if policy.allow_loopback {
            Ok(())
        } else {
            Err(UrlError::NonPublic)
        };
    }
    // Names that exist only inside a cloud network or a LAN.
    let internal = [
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
    ];
    let internal_suffix = [".internal", ".local", ".localdomain", ".home.arpa", ".lan", ".intranet"];
    if name.is_empty()
        || !name.contains('.')
        || internal.contains(&name.as_str())
        || internal_suffix.iter().any(|s| name.ends_with(s))
    {
        return Err(UrlError::NonPublic);
    }
    Ok(())
}

/// Loopback in either family, IPv4-mapped IPv6 included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Whether an address is globally routable unicast: not loopback, private,
/// link-local, CGNAT, unique-local, multicast, documentation, benchmarking,
/// reserved, or a cloud metadata address. IPv6 forms that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = a == 0                                  // 0.0.0.0/8 "this network"
        || a == 10                                        // 10/8 private
        || a == 127                                       // loopback
        || (a == 100 && (64..=127).contains(&b))          // 100.64/10 CGNAT
        || (a == 169 && b == 254)                         // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b))           // 172.16/12 private
        || (a == 192 && b == 0 && c == 0)                 // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // 192.168/16 private
        || (a == 198 && (b == 18 || b == 19))             // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100)              // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)               // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // ::/96 (unspecified, loopback, deprecated IPv4-compatible)
    if s[..6].iter().all(|&x| x == 0) {
        return false;
    }
    // 64:ff9b::/96 NAT64 and 64:ff9b:1::/48 local-use NAT64: judge the embedded IPv4
    if s[0] == 0x64 && s[1] == 0xff9b {
        if s[2..6].iter().all(|&x| x == 0) {
            return is_public_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ));
        }
        return false;
    }
    // 2002::/16 6to4: the embedded IPv4 is the relay target
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    let blocked = (s[0] & 0xfe00) == 0xfc00              // fc00::/7 unique-local (incl. fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80                      // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0                      // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00                      // ff00::/8 multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8)             // documentation
        || (s[0] == 0x2001 && s[1] == 0)                  // Teredo
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010)  // ORCHID
        || (s[0] == 0x0100 && s[1..4].iter().all(|&x| x == 0)) // 100::/64 discard
        || (s[0] & 0xe000) != 0x2000; // outside 2000::/3 global unicast
    !blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_http: false,
        allow_loopback: false,
    };
    const LOCAL: TargetPolicy = TargetPolicy {
        allow_http: true,
        allow_loopback: true,
    };

    #[test]
    fn refuses_non_public_literals_and_names() {
        let refused = [
            "https://127.0.0.1/h",
            "https://127.1.2.3/h",
            "https://[::1]/h",
            "https://10.0.0.1/h",
            "https://172.16.0.1/h",
            "https://172.31.255.255/h",
            "https://192.168.1.1/h",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/h",
            "https://[fc00::1]/h",
            "https://[fd00:ec2::254]/h",
            "https://[fe80::1]/h",
            "https://[::ffff:127.0.0.1]/h",
            "https://[::ffff:10.0.0.1]/h",
            "https://0.0.0.0/h",
            "https://2130706433/h",   // decimal 127.0.0.1
            "https://0177.0.0.1/h",   // octal 127.0.0.1
            "https://0x7f.0.0.1/h",   // hex 127.0.0.1
            "https://017700000001/h", // octal whole-number 127.0.0.1
            "https://[ff02::1]/h",
            "https://224.0.0.1/h",
            "https://255.255.255.255/h",
            "https://[64:ff9b::a00:1]/h", // NAT64 of 10.0.0.1
            "https://[2002:a00:1::]/h",   // 6to4 of 10.0.0.1
            "https://localhost/h",
            "https://LOCALHOST./h",
            "https://api.localhost/h",
            "https://metadata.google.internal/h",
            "https://intranet/h",
        ];
        for u in refused {
            assert_eq!(check_target_url(u, STRICT, true), Err(UrlError::NonPublic), "{u}");
        }
    }

    #[test]
    fn accepts_public_targets() {
        for u in [
            "https://example.com/webhook",
            "https://93.184.215.14:8443/x?y=1",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/w",
            "https://[64:ff9b::5db8:d70e]/w",
        ] {
            assert!(check_target_url(u, STRICT, true).is_ok(), "{u}");
        }
    }

    #[test]
    fn scheme_userinfo_and_length_rules() {
        assert_eq!(
            check_target_url("http://example.com/", STRICT, true),
            Err(UrlError::Scheme(false))
        );
        assert!(check_target_url("http://example.com/", STRICT, false).is_ok());
        assert_eq!(
            check_target_url("ftp://example.com/", STRICT, false),
            Err(UrlError::Scheme(true))
        );
        assert_eq!(
            check_target_url("https://u:p@example.com/", STRICT, true),
            Err(UrlError::UserInfo)
        );
        assert_eq!(check_target_url("/relative", STRICT, true), Err(UrlError::NotAbsolute));
        assert_eq!(
            check_target_url("https://exa mple.com/", STRICT, true),
            Err(UrlError::NotAbsolute)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_target_url(&long, STRICT, true), Err(UrlError::TooLong));
    }

    #[test]
    fn local_mode_allows_loopback_but_not_private() {
        assert!(check_target_url("http://127.0.0.1:8001/webhook", LOCAL, true).is_ok());
        assert!(check_target_url("http://localhost:8001/webhook", LOCAL, true).is_ok());
        assert!(check_target_url("http://[::1]:8001/webhook", LOCAL, true).is_ok());
        assert_eq!(
            check_target_url("http://10.0.0.1/", LOCAL, true),
            Err(UrlError::NonPublic)
        );
        assert_eq!(
            check_target_url("http://169.254.169.254/", LOCAL, true),
            Err(UrlError::NonPublic)
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn every_private_v4_is_refused_in_every_spelling(b in 0u8..=255, c in 0u8..=255, d in 0u8..=255) {
                for ip in [Ipv4Addr::new(10, b, c, d), Ipv4Addr::new(127, b, c, d), Ipv4Addr::new(192, 168, c, d), Ipv4Addr::new(169, 254, c, d)] {
                    prop_assert!(!is_public_ip(IpAddr::V4(ip)));
                    prop_assert!(!is_public_ip(IpAddr::V6(ip.to_ipv6_mapped())));
                    let decimal = format!("https://{}/", u32::from(ip));
                    prop_assert!(check_target_url(&decimal, TargetPolicy::default(), true).is_err());
                }
            }

            #[test]
            fn parser_never_panics(s in "\\PC{0,80}") {
                let _ = check_target_url(&s, TargetPolicy::default(), true);
            }
        }
    }
}
