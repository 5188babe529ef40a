//! Formatting shared by every face of the admin surface: times as RFC 3339
//! with milliseconds (JSON), ages in the largest sensible unit (people), and
//! the serde helpers that put the former into the operations' results.

use chrono::{DateTime, Utc};
use serde::Serializer;

/// A UTC time for JSON: RFC 3339 with milliseconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A UTC time for people: `2026-11-22 14:00:00`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An age in the largest sensible unit: 45s, 12m, 3h, 2d.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub(crate) fn ser_time<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

pub(crate) fn ser_opt_time<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(5.2), "5s");
        assert_eq!(age(125.0), "2m");
        assert_eq!(age(7300.0), "2h");
        assert_eq!(age(3.0 * 86400.0), "3d");
        assert_eq!(age(-1.0), "0s");
    }
}
