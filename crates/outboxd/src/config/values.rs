//! Parsing and printing setting values: durations, counts, booleans,
//! addresses and the SSRF allowlist. Each refusal says what is accepted.

use std::net::SocketAddr;
use std::time::Duration;

use outboxd_core::address::Allowed;
use outboxd_core::DeliveryState;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        format!(
            "{s:?} is not a duration; use a number and a unit, such as 250ms, 30s, 5m, 6h or 7d"
        )
    })?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// A duration, or `off` (also `0`) for none: `Duration::ZERO`.
pub fn parse_duration_or_off(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "off" | "0" => Ok(Duration::ZERO),
        _ => parse_duration(s).map_err(|e| format!("{e}, or off")),
    }
}

/// A boolean as people write them in environment files, any case.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean; use true or false (also 1/0, yes/no, on/off)"
        )),
    }
}

pub(crate) fn parse_state(s: &str) -> Result<DeliveryState, String> {
    s.trim()
        .parse()
        .map_err(|e: outboxd_core::state::UnknownState| e.to_string())
}

pub(crate) fn count(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |s: &str| match s.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a whole number from {min} to {max}")),
    }
}

pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("{s:?} is not an address; use IP:PORT, such as 0.0.0.0:9187 or [::1]:9187")
    })
}

/// An address that may be left out: empty (so `VAR=` in an environment file
/// turns the listener off, as leaving the variable out does) or `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::fmt::Display for OptionalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => Ok(()),
        }
    }
}

pub(crate) fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    match s.trim() {
        "" | "off" => Ok(OptionalAddr(None)),
        _ => parse_addr(s)
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{e}, or empty/off for none")),
    }
}

/// A duration as a person writes it: `7days`, `30s`, `1s 500ms`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration, or `off` for zero (the settings where zero turns a feature off).
pub fn human_or_off(d: Duration) -> String {
    if d.is_zero() {
        "off".into()
    } else {
        human(d)
    }
}

/// An optional value for the log: the value, or `off`.
pub fn or_off(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "off".into(), |v| v.to_string())
}

/// A list for the log: its items, or `none`.
pub fn or_none(list: &AllowList) -> String {
    if list.0.is_empty() {
        "none".into()
    } else {
        list.to_string()
    }
}

/// The SSRF allowlist: CIDRs (or bare addresses), each with every port or
/// one (`10.0.0.0/8:8443`, `[fd00::1]:443`), that may be delivered to
/// despite being private. Parsed from one comma-separated value, so an empty
/// variable (`OUTBOXD_ALLOW_PRIVATE_TARGETS=`) means "none" rather than a
/// bad entry, and a trailing comma is harmless.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<Allowed>);

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

pub(crate) fn parse_allow_list(s: &str) -> Result<AllowList, String> {
    s.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(parse_cidr)
        .collect::<Result<_, _>>()
        .map(AllowList)
}

pub(crate) fn parse_cidr(s: &str) -> Result<Allowed, String> {
    s.parse::<Allowed>().map_err(|e| {
        format!("{e}; separate entries with commas, such as 10.0.0.0/8,192.168.1.5:8443")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human_readable() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("5").unwrap_err().contains("250ms"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(count(1, 10)("10").unwrap(), 10);
        assert!(count(1, 10)("0").unwrap_err().contains("from 1 to 10"));
        assert!(count(1, 10)("ten").is_err());
    }

    #[test]
    fn cidrs_accept_bare_addresses() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert_eq!(
            parse_cidr("10.0.0.0/8:8443").unwrap().to_string(),
            "10.0.0.0/8:8443"
        );
        assert_eq!(
            parse_cidr("[fd00::1]:443").unwrap().to_string(),
            "[fd00::1/128]:443"
        );
    }

    #[test]
    fn an_empty_allow_list_means_none() {
        let nets = |s: &str| parse_allow_list(s).map(|a| a.0.len());
        assert_eq!(nets(""), Ok(0));
        assert_eq!(nets(" "), Ok(0));
        assert_eq!(nets("127.0.0.0/8,::1/128"), Ok(2));
        assert_eq!(nets(" 10.0.0.0/8 , 192.168.1.5 ,"), Ok(2));
        assert!(nets("10.0.0.0/8,nope").unwrap_err().contains("\"nope\""));
    }
}
