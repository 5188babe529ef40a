//! Checks of admin input, done before any write so a mistake is one clear
//! message naming the field rather than a constraint violation. They mirror
//! the SQL CHECKs of V1 (URL shape, event-type syntax) and the request
//! builder's reserved headers, which remain the last word.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::matching;
use outboxd_core::ordering::FailurePolicy;

use crate::{Error, Result};

/// A point back in time: a duration back from now, or a time.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    Ago(Duration),
    At(DateTime<Utc>),
}

/// `30m`, `7d` or an RFC 3339 time.
pub fn since(s: &str) -> Result<Since> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(Since::Ago(d));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    Err(Error::invalid(
        "since",
        format!(
            "{s:?} is neither a duration (30m, 1h, 7d) nor an RFC 3339 time (2026-11-22T14:00:00Z)"
        ),
    ))
}

/// A rate limit in requests per second, as the `rate_limit_positive` rule
/// of V19 takes it: at least 1, and an integer column's worth at most.
pub fn rate_limit(n: i64) -> Result<i32> {
    match i32::try_from(n) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::invalid(
            "rate_limit",
            format!("{n} is not a rate limit: give requests per second, at least 1 (or no limit)"),
        )),
    }
}

/// A rate limit as a form or a flag spells it: a whole number of requests
/// per second, or empty (or `none`) for no limit.
pub fn rate_limit_text(s: &str) -> Result<Option<i32>> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(n) => rate_limit(n).map(Some),
        Err(_) => Err(Error::invalid(
            "rate_limit",
            format!("{t:?} is not a rate limit: give requests per second, a whole number at least 1 (empty or none: no limit)"),
        )),
    }
}

/// An ordered webhook's failure policy: `skip` or `halt`.
pub fn ordering_policy(s: &str) -> Result<FailurePolicy> {
    s.trim()
        .parse()
        .map_err(|e: outboxd_core::ordering::UnknownPolicy| {
            Error::invalid("ordering_policy", e.to_string())
        })
}

/// The URL rules of the `url_scheme` CHECK, with a reason for each.
/// The longest webhook URL, in bytes, as the schema's url_length check.
pub const MAX_URL_BYTES: usize = 8192;

pub fn url(s: &str) -> Result<()> {
    let bad = |m: String| Err(Error::invalid("url", m));
    if s.len() > MAX_URL_BYTES {
        // Not echoed: the message would be as long as the URL.
        return bad(format!(
            "the URL is {} bytes, over the limit of {MAX_URL_BYTES}",
            s.len()
        ));
    }
    if s.chars().any(char::is_whitespace) {
        return bad(format!("URL {s:?} contains whitespace"));
    }
    let lower = s.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme).map(|_| &s[scheme.len()..]))
    else {
        return bad(format!(
            "URL {s:?} must start with http:// or https:// (e.g. https://example.com/webhooks)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return bad(format!(
            "URL {s:?} must not carry credentials (user:password@); send them in a header instead"
        ));
    }
    if authority.is_empty() {
        return bad(format!("URL {s:?} has no host"));
    }
    if let Err(e) = s.parse::<hyper::Uri>() {
        return bad(format!("URL {s:?} is not valid: {e}"));
    }
    Ok(())
}

/// Subscription patterns, trimmed; at least one.
pub fn patterns(given: &[String]) -> Result<Vec<String>> {
    let patterns: Vec<String> = given
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if patterns.is_empty() {
        return Err(Error::invalid(
            "events",
            "give at least one event type or pattern, e.g. payment.* or *",
        ));
    }
    for p in &patterns {
        if !matching::is_valid_pattern(p) {
            return Err(Error::invalid(
                "events",
                format!("{p:?} is not a valid pattern; use an exact type (payment.received), a prefix (payment.*) or *, in lowercase [a-z0-9_.:-]"),
            ));
        }
    }
    Ok(patterns)
}

/// An event type name as the catalog and `outbox.events` accept it.
pub fn event_type(s: &str) -> Result<()> {
    if matching::is_valid_event_type(s) {
        Ok(())
    } else {
        Err(Error::invalid(
            "event_type",
            format!("event type {s:?} is invalid: lowercase letters, digits and _ . : - only, at most 128 characters (e.g. payment.received)"),
        ))
    }
}

/// A webhook name: free text, not blank.
pub fn name(s: &str) -> Result<String> {
    let name = s.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "the name must not be blank"));
    }
    Ok(name.to_owned())
}

/// Extra request headers, names lowercased; outboxd's own headers are
/// refused here because the request builder would silently drop them.
pub fn headers(given: &[(String, String)]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for (name, value) in given {
        let bad = |m: String| Err(Error::invalid("headers", m));
        let Ok(header) = hyper::header::HeaderName::from_bytes(name.trim().as_bytes()) else {
            return bad(format!("{:?} is not a valid header name", name.trim()));
        };
        if outboxd_deliverer::request::RESERVED.contains(&header.as_str()) {
            return bad(format!(
                "{header} is set by outboxd and cannot be overridden"
            ));
        }
        if hyper::header::HeaderValue::from_str(value).is_err() {
            return bad(format!("the value of {header} is not a valid header value"));
        }
        out.insert(header.as_str().to_owned(), value.as_str().into());
    }
    Ok(out)
}

/// A JSON text, such as an example payload.
pub fn json(field: &'static str, s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| Error::invalid(field, format!("not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(since("1h").unwrap(), Since::Ago(Duration::from_secs(3600)));
        assert_eq!(
            since("2026-11-22T14:00:00+01:00").unwrap(),
            Since::At("2026-11-22T13:00:00Z".parse().unwrap())
        );
        for bad in ["1x", "", "yesterday", "2026-11-22"] {
            assert!(msg(since(bad)).contains("RFC 3339"), "{bad:?}");
        }
    }

    #[test]
    fn rate_limits_are_at_least_one_and_fit_the_column() {
        assert_eq!(rate_limit(1).unwrap(), 1);
        assert_eq!(rate_limit(50).unwrap(), 50);
        for bad in [0, -1, i64::from(i32::MAX) + 1] {
            let e = rate_limit(bad).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: "rate_limit", message }
                    if message.contains("not a rate limit") && message.contains("at least 1")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn rate_limits_as_text_are_a_number_or_empty_for_none() {
        assert_eq!(rate_limit_text(" 50 ").unwrap(), Some(50));
        for none in ["", "  ", "none", "None"] {
            assert_eq!(rate_limit_text(none).unwrap(), None, "{none:?}");
        }
        for bad in ["0", "-3", "fast", "1.5", "99999999999"] {
            let e = rate_limit_text(bad).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: "rate_limit", message }
                    if message.contains("at least 1")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn ordering_policies_are_skip_or_halt() {
        assert_eq!(ordering_policy("skip").unwrap(), FailurePolicy::Skip);
        assert_eq!(ordering_policy(" halt ").unwrap(), FailurePolicy::Halt);
        for bad in ["", "Skip", "stop"] {
            let e = ordering_policy(bad).unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: "ordering_policy", message }
                    if message.contains("skip") && message.contains("halt")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn urls_follow_the_sql_check() {
        for ok in [
            "http://a",
            "https://example.com/x?y=1#z",
            "HTTPS://Example.com:8443/",
        ] {
            assert!(url(ok).is_ok(), "{ok}");
        }
        let long = format!("https://example.com/{}", "a".repeat(8200));
        let cases = [
            ("example.com/hook", "must start with http"),
            ("ftp://example.com", "must start with http"),
            ("https://user:pw@example.com/", "credentials"),
            ("https://example.com/a b", "whitespace"),
            (long.as_str(), "over the limit of 8192"),
            ("https:///path", "no host"),
        ];
        for (bad, why) in cases {
            assert!(msg(url(bad)).contains(why), "{bad}");
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
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        let h = headers(&[
            pair("X-Tenant", "acme"),
            pair("authorization", "Bearer a=b"),
        ])
        .unwrap();
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h["authorization"], "Bearer a=b");
        assert!(msg(headers(&[pair("webhook-signature", "x")])).contains("set by outboxd"));
        assert!(headers(&[pair("bad name", "x")]).is_err());
        assert!(matches!(
            headers(&[pair("x", "a\nb")]),
            Err(Error::Invalid {
                field: "headers",
                ..
            })
        ));
    }
}
