//! Checks of admin input, done before any write so a mistake is one clear
//! line rather than a constraint violation. They mirror the SQL CHECKs of
//! V1 (URL shape, event-type syntax) and the request builder's reserved
//! headers, which remain the last word.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::matching;

/// `--since`: a duration back from now, or a point in time.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    Ago(Duration),
    At(DateTime<Utc>),
}

pub fn since(s: &str) -> Result<Since, String> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(Since::Ago(d));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    Err(format!(
        "--since: {s:?} is neither a duration (30m, 1h, 7d) nor an RFC 3339 time (2026-11-22T14:00:00Z)"
    ))
}

/// A duration that may be zero (`--overlap 0`: no overlap).
pub fn duration_or_zero(flag: &str, s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|_| {
        format!(
            "{flag}: {s:?} is not a duration; use a number and a unit, such as 30s, 15m, 24h or 7d"
        )
    })
}

/// A duration longer than zero.
pub fn duration(flag: &str, s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s).map_err(|e| format!("{flag}: {e}"))
}

/// The URL rules of the `url_scheme` CHECK, with a reason for each.
pub fn url(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_whitespace) {
        return Err(format!("URL {s:?} contains whitespace"));
    }
    let lower = s.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme).map(|_| &s[scheme.len()..]))
    else {
        return Err(format!(
            "URL {s:?} must start with http:// or https:// (e.g. https://example.com/webhooks)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "URL {s:?} must not carry credentials (user:password@); send them in a header, e.g. --header authorization=..."
        ));
    }
    if authority.is_empty() {
        return Err(format!("URL {s:?} has no host"));
    }
    s.parse::<hyper::Uri>()
        .map_err(|e| format!("URL {s:?} is not valid: {e}"))?;
    Ok(())
}

/// Subscription patterns, trimmed; at least one.
pub fn patterns(given: &[String]) -> Result<Vec<String>, String> {
    let patterns: Vec<String> = given
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Err(
            "--events: give at least one event type or pattern, e.g. payment.* or *".into(),
        );
    }
    for p in &patterns {
        if !matching::is_valid_pattern(p) {
            return Err(format!(
                "--events: {p:?} is not a valid pattern; use an exact type (payment.received), a prefix (payment.*) or *, in lowercase [a-z0-9_.:-]"
            ));
        }
    }
    Ok(patterns)
}

pub fn event_type(s: &str) -> Result<(), String> {
    if matching::is_valid_event_type(s) {
        Ok(())
    } else {
        Err(format!(
            "event type {s:?} is invalid: lowercase letters, digits and _ . : - only, at most 128 characters (e.g. payment.received)"
        ))
    }
}

/// `--header NAME=VALUE` pairs, names lowercased; outboxd's own headers are
/// refused here because the request builder would silently drop them.
pub fn headers(given: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut out = serde_json::Map::new();
    for h in given {
        let Some((name, value)) = h.split_once('=') else {
            return Err(format!(
                "--header {h:?}: expected NAME=VALUE, e.g. x-tenant=acme"
            ));
        };
        let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            format!(
                "--header {h:?}: {:?} is not a valid header name",
                name.trim()
            )
        })?;
        if outboxd_deliverer::request::RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "--header {h:?}: {name} is set by outboxd and cannot be overridden"
            ));
        }
        hyper::header::HeaderValue::from_str(value)
            .map_err(|_| format!("--header {h:?}: the value is not a valid header value"))?;
        out.insert(name.as_str().to_owned(), value.into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(since("1h").unwrap(), Since::Ago(Duration::from_secs(3600)));
        assert_eq!(
            since("2026-11-22T14:00:00+01:00").unwrap(),
            Since::At("2026-11-22T13:00:00Z".parse().unwrap())
        );
        for bad in ["1x", "", "yesterday", "2026-11-22"] {
            assert!(since(bad).unwrap_err().contains("RFC 3339"), "{bad:?}");
        }
    }

    #[test]
    fn urls_follow_the_sql_check() {
        for ok in [
            "http://a",
            "https://example.com/x?y=1#z",
            "HTTPS://Example.com:8443/",
        ] {
            assert_eq!(url(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("example.com/hook", "must start with http"),
            ("ftp://example.com", "must start with http"),
            ("https://user:pw@example.com/", "credentials"),
            ("https://example.com/a b", "whitespace"),
            ("https:///path", "no host"),
        ];
        for (bad, why) in cases {
            assert!(url(bad).unwrap_err().contains(why), "{bad}");
        }
    }

    #[test]
    fn patterns_and_headers_are_checked() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            patterns(&s(&[" payment.* ", "*"])).unwrap(),
            ["payment.*", "*"]
        );
        assert!(patterns(&s(&["Payment.*"])).is_err());
        assert!(patterns(&s(&[""])).is_err());
        let h = headers(&s(&["X-Tenant=acme", "authorization=Bearer a=b"])).unwrap();
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h["authorization"], "Bearer a=b");
        assert!(headers(&s(&["webhook-signature=x"]))
            .unwrap_err()
            .contains("set by outboxd"));
        assert!(headers(&s(&["novalue"])).is_err());
        assert!(headers(&s(&["bad name=x"])).is_err());
    }

    #[test]
    fn overlaps_may_be_zero() {
        assert_eq!(duration_or_zero("--overlap", "0").unwrap(), Duration::ZERO);
        assert_eq!(
            duration_or_zero("--overlap", "24h").unwrap(),
            Duration::from_secs(86400)
        );
        assert!(duration_or_zero("--overlap", "soon").is_err());
    }
}
