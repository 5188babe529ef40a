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
