//! Which addresses a webhook may be delivered to: the SSRF rule.
//!
//! Webhook URLs are typed by users, so a URL may point at the daemon's own
//! network: loopback, RFC 1918, cloud metadata (169.254.169.254), and so on.
//! The deliverer asks `refusal` about every address a host resolves to, after
//! resolution, so a DNS name cannot smuggle a private address past the check.
//! IPv4-mapped and IPv4-embedding IPv6 forms are judged by their IPv4 part.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is refused, as the delivery log says it:
/// `blocked: 10.0.0.5 is private`. `None` when it may be delivered to.
pub fn refusal(addr: IpAddr, allowed: &[IpNet]) -> Option<&'static str> {
    let kind = kind(addr)?;
    let canonical = addr.to_canonical();
    if allowed
        .iter()
        .any(|net| net.contains(&addr) || net.contains(&canonical))
    {
        return None;
    }
    Some(kind)
}

/// The narrowest allowlist entry that lets `addr` through: the address
/// itself (an IPv4-mapped one as its IPv4, which `refusal` also accepts),
/// so a refusal can say exactly what to allow.
pub fn allowing_net(addr: IpAddr) -> IpNet {
    IpNet::from(addr.to_canonical())
}

/// The kind of a non-public address, or `None` for a public one.
pub fn kind(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => kind_v4(v4),
        IpAddr::V6(v6) => kind_v6(v6),
    }
}

fn kind_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [b0, b1, b2, _] = a.octets();
    Some(match (b0, b1, b2) {
        _ if a.is_unspecified() || b0 == 0 => "unspecified",
        _ if a.is_loopback() => "loopback",
        _ if a.is_private() => "private",
        _ if a.is_link_local() => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT",
        _ if a.is_broadcast() => "broadcast",
        _ if a.is_multicast() => "multicast",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 0, 0) => "reserved",
        _ if b0 >= 240 => "reserved",
        _ => return None,
    })
}

fn kind_v6(a: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(a) {
        return kind_v4(v4);
    }
    let s = a.segments();
    Some(match s[0] {
        _ if a.is_unspecified() => "unspecified",
        _ if a.is_loopback() => "loopback",
        0xfc00..=0xfdff => "unique local",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv6 one, for the forms that route to it:
/// IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64
/// (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // ::1 and :: are IPv6's own loopback and unspecified, not IPv4.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_with_their_kind() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.254", "carrier-grade NAT"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique local"),
            ("fc12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.5", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a00:1", "private"),
            ("2002:7f00:1::", "loopback"),
        ];
        for (addr, want) in cases {
            assert_eq!(refusal(ip(addr), &[]), Some(want), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refusal(ip(addr), &[]), None, "{addr}");
        }
    }

    #[test]
    fn the_allowlist_opens_chosen_ranges_only() {
        let allow: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        assert_eq!(refusal(ip("127.0.0.1"), &allow), None);
        assert_eq!(refusal(ip("::ffff:127.0.0.1"), &allow), None);
        assert_eq!(refusal(ip("10.1.2.3"), &allow), None);
        assert_eq!(refusal(ip("10.2.0.1"), &allow), Some("private"));
        assert_eq!(refusal(ip("::1"), &allow), Some("loopback"));
    }

    #[test]
    fn the_allowing_net_lets_exactly_that_address_through() {
        for (addr, net) in [
            ("127.0.0.1", "127.0.0.1/32"),
            ("::ffff:127.0.0.1", "127.0.0.1/32"),
            ("::1", "::1/128"),
            ("10.0.0.5", "10.0.0.5/32"),
            ("fd00::1", "fd00::1/128"),
            ("64:ff9b::a00:1", "64:ff9b::a00:1/128"),
        ] {
            let allowed = allowing_net(ip(addr));
            assert_eq!(allowed.to_string(), net, "{addr}");
            assert_eq!(refusal(ip(addr), &[allowed]), None, "{addr}");
        }
    }

    proptest! {
        #[test]
        fn mapped_v6_is_judged_like_its_v4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(kind(mapped), kind(IpAddr::V4(v4)));
        }
    }
}
