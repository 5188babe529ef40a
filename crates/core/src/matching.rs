//! Event-type names and the subscription patterns that select them.
//! A pattern is `*`, an exact type, or `prefix.*`; the prefix form only matches below a
//! `.` boundary so `payment.*` never catches `payments.x`. Validation mirrors the SQL
//! CHECK on `outbox.events.event_type`, so a name accepted here is accepted there.

/// Longest event type accepted, in bytes (all allowed characters are ASCII).
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// The pattern that matches every event type.
pub const MATCH_ALL: &str = "*";

/// Suffix that turns an event type into a prefix pattern.
const PREFIX_SUFFIX: &str = ".*";

/// True if `s` is 1..=128 characters, each in `[a-z0-9_.:-]`.
pub fn is_valid_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_TYPE_LEN
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b':' | b'-'))
}

/// True if `s` is `*`, `<event type>.*`, or an event type.
pub fn is_valid_pattern(s: &str) -> bool {
    if s == MATCH_ALL {
        return true;
    }
    match s.strip_suffix(PREFIX_SUFFIX) {
        Some(prefix) => is_valid_event_type(prefix),
        None => is_valid_event_type(s),
    }
}

/// True if `pattern` selects `event_type`.
///
/// `payment.*` matches `payment.received` and `payment.refund.created`, but neither
/// `payment` (the prefix is a namespace, not an event) nor `payments.x`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == MATCH_ALL {
        return true;
    }
    match pattern.strip_suffix(PREFIX_SUFFIX) {
        // Compare bytes: the prefix, then a literal '.', then at least one more byte.
        Some(prefix) => {
            event_type.len() > prefix.len() + 1
                && event_type.as_bytes()[prefix.len()] == b'.'
                && event_type.starts_with(prefix)
        }
        None => pattern == event_type,
    }
}

/// Longest tenant id accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 64;

/// True if `s` is a tenant id: 1..=64 characters of `[a-z0-9_.-]`, the first
/// a letter or digit. Mirrors `outbox.is_valid_tenant` in SQL.
pub fn is_valid_tenant(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TENANT_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

/// True if a webhook of `webhook_tenant` gets events of `event_tenant`
/// (`None`: the platform). A platform webhook gets every event; a tenant's
/// webhook gets that tenant's events only, never a platform event.
pub fn tenant_receives(webhook_tenant: Option<&str>, event_tenant: Option<&str>) -> bool {
    match webhook_tenant {
        None => true,
        Some(w) => event_tenant == Some(w),
    }
}

/// True if any of `patterns` selects `event_type`.
pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a str>, event_type: &str) -> bool {
    patterns
        .into_iter()
        .any(|pattern| pattern_matches(pattern, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tenant_routing() {
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            // Platform webhooks get everything.
            (None, None, true),
            (None, Some("acme"), true),
            // A tenant's webhook gets its own tenant's events only.
            (Some("acme"), Some("acme"), true),
            (Some("acme"), Some("globex"), false),
            (Some("acme"), None, false),
            (Some("acme"), Some("acme2"), false),
        ];
        for &(webhook, event, want) in cases {
            assert_eq!(
                tenant_receives(webhook, event),
                want,
                "{webhook:?} <- {event:?}"
            );
        }
    }

    #[test]
    fn tenant_validity() {
        let max = "a".repeat(64);
        let over = "a".repeat(65);
        for ok in [
            "acme",
            "site-42",
            "0",
            "a.b_c-d",
            max.as_str(),
            "0b7c3a1e-5c1d-4f7a-9a55-1f0e0d6b2c11",
        ] {
            assert!(is_valid_tenant(ok), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "-acme",
            ".acme",
            "_a",
            "ac me",
            "acme/x",
            "a\0",
            "é",
            over.as_str(),
        ] {
            assert!(!is_valid_tenant(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_platform_event_reaches_platform_webhooks_only(w in "[a-z0-9]{1,8}") {
            prop_assert!(!tenant_receives(Some(&w), None));
            prop_assert!(tenant_receives(None, None));
        }

        #[test]
        fn a_tenant_event_reaches_its_tenant_and_the_platform(w in "[a-z0-9]{1,8}", e in "[a-z0-9]{1,8}") {
            prop_assert!(tenant_receives(None, Some(&e)));
            prop_assert_eq!(tenant_receives(Some(&w), Some(&e)), w == e);
        }
    }

    #[test]
    fn event_type_validity() {
        let long_ok = "a".repeat(128);
        let too_long = "a".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("payment.received", true),
            ("a", true),
            ("order:v2_created-x.y", true),
            ("0.9", true),
            (&long_ok, true),
            ("", false),
            (&too_long, false),
            ("Payment.received", false),
            ("payment received", false),
            ("payment.*", false),
            ("*", false),
            ("paymént", false),
            ("a/b", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_valid_event_type(s), *want, "{s:?}");
        }
    }

    #[test]
    fn pattern_validity() {
        let cases: &[(&str, bool)] = &[
            ("*", true),
            ("payment.*", true),
            ("payment.refund.*", true),
            ("payment.received", true),
            ("", false),
            (".*", false),
            ("**", false),
            ("payment*", false),
            ("payment.*.created", false),
            ("*.received", false),
            ("Payment.*", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_valid_pattern(s), *want, "{s:?}");
        }
    }

    #[test]
    fn pattern_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "payment.received", true),
            ("*", "x", true),
            ("payment.*", "payment.received", true),
            ("payment.*", "payment.refund.created", true),
            ("payment.*", "payment", false),
            ("payment.*", "payment.", false),
            ("payment.*", "payments.x", false),
            ("payment.*", "paymentx", false),
            ("payment.*", "order.payment.received", false),
            ("payment.refund.*", "payment.refund.created", true),
            ("payment.refund.*", "payment.received", false),
            ("payment.received", "payment.received", true),
            ("payment.received", "payment.received.late", false),
            ("payment.received", "payment", false),
        ];
        for (pattern, event_type, want) in cases {
            assert_eq!(
                pattern_matches(pattern, event_type),
                *want,
                "{pattern:?} vs {event_type:?}"
            );
        }
    }

    #[test]
    fn any_of_several_patterns() {
        let patterns = ["order.created", "payment.*"];
        assert!(any_matches(patterns, "payment.received"));
        assert!(any_matches(patterns, "order.created"));
        assert!(!any_matches(patterns, "order.deleted"));
        assert!(!any_matches([], "order.created"));
        let owned = [String::from("*")];
        assert!(any_matches(owned.iter().map(String::as_str), "anything"));
    }

    fn event_type() -> impl Strategy<Value = String> {
        "[a-z0-9_.:-]{1,128}"
    }

    proptest! {
        #[test]
        fn generated_event_types_are_valid(s in event_type()) {
            prop_assert!(is_valid_event_type(&s));
            prop_assert!(is_valid_pattern(&s));
        }

        #[test]
        fn every_valid_event_type_matches_itself_and_star(s in event_type()) {
            prop_assert!(pattern_matches(&s, &s));
            prop_assert!(pattern_matches("*", &s));
        }

        #[test]
        fn prefix_pattern_matches_exactly_the_children(prefix in "[a-z0-9_:-]{1,20}", rest in "[a-z0-9_.:-]{0,20}") {
            let pattern = format!("{prefix}.*");
            prop_assert!(is_valid_pattern(&pattern));
            prop_assert!(!pattern_matches(&pattern, &prefix));
            let child = format!("{prefix}.{rest}");
            prop_assert_eq!(pattern_matches(&pattern, &child), !rest.is_empty());
            // A longer sibling name never matches.
            let sibling = format!("{prefix}s.{rest}x");
            prop_assert!(!pattern_matches(&pattern, &sibling));
        }

        #[test]
        fn invalid_characters_are_rejected(a in event_type(), c in "[^a-z0-9_.:-]") {
            let s = format!("{a}{c}");
            prop_assert!(!is_valid_event_type(&s));
        }

        #[test]
        fn matching_never_panics(p in ".{0,40}", e in ".{0,40}") {
            let _ = pattern_matches(&p, &e);
            let _ = is_valid_pattern(&p);
        }
    }
}
