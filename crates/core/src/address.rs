//! Which addresses a webhook may be delivered to: the SSRF rule.
//!
//! Webhook URLs are typed by users, so a URL may point at the daemon's own
//! network: loopback, RFC 1918, cloud metadata (169.254.169.254), and so on.
//! The deliverer asks `refusal` about every address a host resolves to, after
//! resolution, so a DNS name cannot smuggle a private address past the check.
//! IPv6 forms that carry an IPv4 address (mapped, translated, compatible,
//! NAT64, 6to4, Teredo) are judged by the IPv4 they carry. The allowlist
//! names networks, each with all its ports or one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// One entry of the allowlist: a network, and the one port it opens, or
/// every port. Written `10.0.0.0/8`, `10.0.0.5:8443`, `fd00::/8`,
/// `[fd00::1]:443` or `[fd00::/64]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    pub net: IpNet,
    pub port: Option<u16>,
}

impl Allowed {
    fn admits(&self, addr: IpAddr, port: Option<u16>) -> bool {
        let canonical = addr.to_canonical();
        (self.net.contains(&addr) || self.net.contains(&canonical))
            && self.port.is_none_or(|p| Some(p) == port)
    }
}

impl From<IpNet> for Allowed {
    fn from(net: IpNet) -> Self {
        Allowed { net, port: None }
    }
}

/// Why an allowlist entry did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry(pub String);

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a network: use a CIDR or an address, optionally with a port \
             (10.0.0.0/8, 10.0.0.5:8443, [fd00::1]:443)",
            self.0
        )
    }
}

impl std::error::Error for BadEntry {}

impl FromStr for Allowed {
    type Err = BadEntry;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || BadEntry(s.to_owned());
        let net = |n: &str| {
            n.parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| bad())
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad);
        if let Some(rest) = s.strip_prefix('[') {
            // [v6] or [v6]:port; only IPv6 goes in brackets.
            let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
            let net = net(inner)?;
            if !matches!(net, IpNet::V6(_)) {
                return Err(bad());
            }
            let port = match after {
                "" => None,
                _ => Some(port(after.strip_prefix(':').ok_or_else(bad)?)?),
            };
            return Ok(Allowed { net, port });
        }
        if let Ok(net) = net(s) {
            return Ok(Allowed { net, port: None });
        }
        // IPv4 with a port; a bare IPv6 address has colons of its own and
        // needs brackets for one.
        let (host, p) = s.rsplit_once(':').ok_or_else(bad)?;
        match net(host)? {
            net @ IpNet::V4(_) => Ok(Allowed {
                net,
                port: Some(port(p)?),
            }),
            IpNet::V6(_) => Err(bad()),
        }
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.net, self.port) {
            (net, None) => write!(f, "{net}"),
            (IpNet::V4(net), Some(port)) => write!(f, "{net}:{port}"),
            (IpNet::V6(net), Some(port)) => write!(f, "[{net}]:{port}"),
        }
    }
}

/// Why an address is refused, as the delivery log says it:
/// `blocked: 10.0.0.5 is private`. `None` when it may be delivered to.
/// `port` is the one the connection would go to; `None` when it is not
/// known, and then only entries that open every port apply.
pub fn refusal(addr: IpAddr, port: Option<u16>, allowed: &[Allowed]) -> Option<&'static str> {
    let kind = kind(addr)?;
    if allowed.iter().any(|a| a.admits(addr, port)) {
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
    let s = a.segments();
    if let [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] = s {
        // Teredo: the server's IPv4, and the client's with its bits flipped.
        let server = v4_of(server_hi, server_lo);
        let client = v4_of(!client_hi, !client_lo);
        return kind_v4(client).or_else(|| kind_v4(server));
    }
    if let Some(v4) = embedded_v4(a) {
        return kind_v4(v4);
    }
    Some(match s[0] {
        // Local-use NAT64 (RFC 8215): a translator of the site's own, with
        // the IPv4 at a place only its operator knows.
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "NAT64 local-use",
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
/// IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d),
/// IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4
/// (2002:AABB:CCDD::).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = v4_of(s[6], s[7]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // ::1 and :: are IPv6's own loopback and unspecified, not IPv4.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(v4_of(hi, lo)),
        _ => None,
    }
}

fn v4_of(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
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
            ("2002:a00:5::1", "private"),
            ("2002:a9fe:a9fe::", "link-local"),
            // IPv4-translated (::ffff:0:0/96).
            ("::ffff:0:127.0.0.1", "loopback"),
            ("::ffff:0:10.0.0.5", "private"),
            ("::ffff:0:169.254.169.254", "link-local"),
            // NAT64, well-known prefix and local use.
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::169.254.169.254", "link-local"),
            ("64:ff9b:1::a00:5", "NAT64 local-use"),
            ("64:ff9b:1:ffff::8.8.8.8", "NAT64 local-use"),
            // Teredo: client 10.0.0.5 (flipped: f5ff:fffa), or server 192.168.1.1.
            ("2001:0:4136:e378:8000:63bf:f5ff:fffa", "private"),
            ("2001:0:c0a8:101::f7f7:f7f7", "private"),
            ("2001:0:4136:e378::80ff:fffe", "loopback"),
        ];
        for (addr, want) in cases {
            assert_eq!(refusal(ip(addr), None, &[]), Some(want), "{addr}");
            assert_eq!(refusal(ip(addr), Some(443), &[]), Some(want), "{addr}");
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
            "::ffff:0:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            // Teredo with public server 65.54.227.120 and client 8.8.8.8.
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert_eq!(refusal(ip(addr), None, &[]), None, "{addr}");
        }
    }

    fn entries(list: &[&str]) -> Vec<Allowed> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn the_allowlist_opens_chosen_ranges_only() {
        let allow = entries(&["127.0.0.0/8", "10.1.0.0/16"]);
        for port in [None, Some(80)] {
            assert_eq!(refusal(ip("127.0.0.1"), port, &allow), None);
            assert_eq!(refusal(ip("::ffff:127.0.0.1"), port, &allow), None);
            assert_eq!(refusal(ip("10.1.2.3"), port, &allow), None);
            assert_eq!(refusal(ip("10.2.0.1"), port, &allow), Some("private"));
            assert_eq!(refusal(ip("::1"), port, &allow), Some("loopback"));
            // Only the mapped form routes to IPv4: the others stay refused.
            assert_eq!(
                refusal(ip("::ffff:0:127.0.0.1"), port, &allow),
                Some("loopback")
            );
        }
    }

    #[test]
    fn an_entry_with_a_port_opens_that_port_only() {
        let allow = entries(&["10.0.0.0/8:8443", "[fd00::1]:443", "[fd01::/64]"]);
        let cases = [
            ("10.1.2.3", Some(8443), None),
            ("::ffff:10.1.2.3", Some(8443), None),
            ("10.1.2.3", Some(443), Some("private")),
            ("10.1.2.3", None, Some("private")),
            ("fd00::1", Some(443), None),
            ("fd00::1", Some(8443), Some("unique local")),
            ("fd00::2", Some(443), Some("unique local")),
            ("fd01::9", Some(1), None),
            ("fd01::9", None, None),
        ];
        for (addr, port, want) in cases {
            assert_eq!(refusal(ip(addr), port, &allow), want, "{addr} {port:?}");
        }
    }

    #[test]
    fn allowlist_entries_parse_and_print_back() {
        let good = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            (" 127.0.0.1 ", "127.0.0.1/32"),
            ("10.0.0.0/8:8443", "10.0.0.0/8:8443"),
            ("10.0.0.5:443", "10.0.0.5/32:443"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("[fd00::1]", "fd00::1/128"),
            ("[fd00::1]:443", "[fd00::1/128]:443"),
            ("[fd00::/64]:8443", "[fd00::/64]:8443"),
        ];
        for (text, shown) in good {
            let entry: Allowed = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(entry.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Allowed>(), Ok(entry), "{shown}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.5:",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            "10.0.0.5:x",
            "[10.0.0.5]:80",
            "[fd00::1",
            "[fd00::1]443",
            "fd00::1:443:x",
            "example.com:80",
        ] {
            let err = bad.parse::<Allowed>().unwrap_err();
            assert!(err.to_string().contains("[fd00::1]:443"), "{bad}: {err}");
        }
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
            assert_eq!(
                refusal(ip(addr), Some(443), &[allowed.into()]),
                None,
                "{addr}"
            );
        }
    }

    proptest! {
        #[test]
        fn mapped_v6_is_judged_like_its_v4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(kind(mapped), kind(IpAddr::V4(v4)));
        }

        #[test]
        fn every_v4_carrying_form_is_judged_like_its_v4(a in any::<u32>()) {
            let v4 = Ipv4Addr::from(a);
            let (hi, lo) = ((a >> 16) as u16, a as u16);
            let want = kind(IpAddr::V4(v4));
            for form in [
                Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
            ] {
                prop_assert_eq!(kind(IpAddr::V6(form)), want, "{}", form);
            }
            // Teredo with a public server: judged by the client.
            let teredo = Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0, 0, !hi, !lo);
            prop_assert_eq!(kind(IpAddr::V6(teredo)), want, "{}", teredo);
        }

        #[test]
        fn entries_print_back_as_themselves(a in any::<u128>(), len in 0u8..=128, port in proptest::option::of(1u16..)) {
            let net = IpNet::V6(ipnet::Ipv6Net::new(Ipv6Addr::from(a), len).unwrap());
            let entry = Allowed { net, port };
            prop_assert_eq!(entry.to_string().parse::<Allowed>(), Ok(entry));
        }
    }
}
