//! Command-line spellings of admin input, turned into what the shared
//! checks of `outboxd_admin::validate` take; errors name the flag. The
//! checks themselves (URL, patterns, headers, event types) live there, so
//! the CLI and the console refuse the same input with the same reasons.

use std::time::Duration;

pub use outboxd_admin::validate::Since;

/// `--since`: a duration back from now, or a point in time.
pub fn since(s: &str) -> Result<Since, String> {
    outboxd_admin::validate::since(s).map_err(|e| format!("--since: {e}"))
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

/// `--header NAME=VALUE` pairs, split for the shared check.
pub fn header_pairs(given: &[String]) -> Result<Vec<(String, String)>, String> {
    given
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--header {h:?}: expected NAME=VALUE, e.g. x-tenant=acme"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_names_the_flag() {
        assert_eq!(since("1h").unwrap(), Since::Ago(Duration::from_secs(3600)));
        let e = since("yesterday").unwrap_err();
        assert!(e.starts_with("--since") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn headers_are_name_value_pairs() {
        let pairs = header_pairs(&["authorization=Bearer a=b".into()]).unwrap();
        assert_eq!(pairs, [("authorization".into(), "Bearer a=b".into())]);
        assert!(header_pairs(&["novalue".into()]).is_err());
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
