//! Event-type names and the subscription patterns that select them.
//! A pattern is `*`, an exact type, or `prefix.*`; the prefix form only matches below a
//! `.` boundary so `payment.*` never catches `payments.x`. Validation mirrors the SQL
//! CHECK on `outbox.events.event_type`, so a name accepted here is accepted there.
//! Tenants are here too: their id, which events reach a tenant's webhook, and the
//! headers a tenant's webhook may carry.

use std::collections::{HashMap, HashSet};

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

/// Header-name prefixes a tenant's webhook may not carry: what the signature
/// covers or frames, and what proxies route or trust by.
pub const TENANT_FORBIDDEN_PREFIXES: [&str; 4] = ["webhook-", "content-", "x-forwarded-", "proxy-"];

/// Header names a tenant's webhook may not carry.
pub const TENANT_FORBIDDEN_NAMES: [&str; 7] = [
    "host",
    "forwarded",
    "x-real-ip",
    "via",
    "expect",
    "accept-encoding",
    "x-http-method-override",
];

/// True if a tenant's webhook may carry header `name` (any case): not one
/// the signature covers or frames (`webhook-*`, `content-*`) nor one that
/// proxies and receivers route or trust by. A tenant's headers are typed by
/// a customer; the platform's operators may set any of them on their own
/// webhooks. Mirrors `outbox.is_tenant_header` in SQL (migration V24).
pub fn tenant_may_set_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    !TENANT_FORBIDDEN_PREFIXES.iter().any(|p| n.starts_with(p))
        && !TENANT_FORBIDDEN_NAMES.contains(&n.as_str())
}

/// True if any of `patterns` selects `event_type`.
pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a str>, event_type: &str) -> bool {
    patterns
        .into_iter()
        .any(|pattern| pattern_matches(pattern, event_type))
}

/// Which subscribers an event type goes to, found without looking at every
/// subscriber: `*` subscribers, an exact-type map, and a map from each
/// prefix to its `prefix.*` subscribers, probed at each `.` of the type. A
/// lookup costs the type's length, whatever the number of subscribers, and
/// an insert or removal costs the subscriber's own patterns.
#[derive(Debug, Default, Clone)]
pub struct Subscriptions {
    all: HashSet<i64>,
    exact: HashMap<String, HashSet<i64>>,
    prefix: HashMap<String, HashSet<i64>>,
    patterns: HashMap<i64, Vec<String>>,
}

impl Subscriptions {
    /// Sets the subscriber's patterns, replacing what it had.
    pub fn insert(&mut self, id: i64, patterns: &[String]) {
        self.remove(id);
        for pattern in patterns {
            match self.slot(pattern) {
                Some(set) => set.insert(id),
                None => self.all.insert(id),
            };
        }
        self.patterns.insert(id, patterns.to_vec());
    }

    pub fn remove(&mut self, id: i64) {
        let Some(patterns) = self.patterns.remove(&id) else {
            return;
        };
        for pattern in &patterns {
            if pattern == MATCH_ALL {
                self.all.remove(&id);
                continue;
            }
            let (map, key) = match pattern.strip_suffix(PREFIX_SUFFIX) {
                Some(prefix) => (&mut self.prefix, prefix),
                None => (&mut self.exact, pattern.as_str()),
            };
            if let Some(set) = map.get_mut(key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(key);
                }
            }
        }
    }

    /// The set a pattern's subscribers go in; `None` for `*`.
    fn slot(&mut self, pattern: &str) -> Option<&mut HashSet<i64>> {
        if pattern == MATCH_ALL {
            return None;
        }
        Some(match pattern.strip_suffix(PREFIX_SUFFIX) {
            Some(prefix) => self.prefix.entry(prefix.to_owned()).or_default(),
            None => self.exact.entry(pattern.to_owned()).or_default(),
        })
    }

    /// The subscribers whose patterns select `event_type`, in id order.
    pub fn matching(&self, event_type: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self.all.iter().copied().collect();
        ids.extend(self.exact.get(event_type).into_iter().flatten());
        // `prefix.*` needs at least one byte after the dot.
        for (i, _) in event_type
            .match_indices('.')
            .filter(|&(i, _)| i + 1 < event_type.len())
        {
            ids.extend(self.prefix.get(&event_type[..i]).into_iter().flatten());
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
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

    #[test]
    fn tenants_may_not_set_what_the_platform_signs_or_routes_by() {
        for bad in [
            "webhook-signature",
            "Webhook-Id",
            "content-encoding",
            "Content-Type",
            "host",
            "HOST",
            "x-forwarded-for",
            "forwarded",
            "proxy-authorization",
            "x-real-ip",
            "via",
            "expect",
            "accept-encoding",
            "x-http-method-override",
        ] {
            assert!(!tenant_may_set_header(bad), "{bad}");
        }
        for ok in [
            "authorization",
            "x-api-key",
            "x-customer",
            "hostname",
            "webhook",
        ] {
            assert!(tenant_may_set_header(ok), "{ok}");
        }
    }

    proptest! {
        #[test]
        fn a_header_is_judged_whatever_its_case(name in "[a-zA-Z-]{1,24}") {
            prop_assert_eq!(
                tenant_may_set_header(&name),
                tenant_may_set_header(&name.to_ascii_lowercase())
            );
        }

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

    #[test]
    fn subscriptions_find_exact_prefix_and_all_subscribers() {
        let mut s = Subscriptions::default();
        let p = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        s.insert(1, &p(&["payment.*"]));
        s.insert(2, &p(&["payment.received", "order.*"]));
        s.insert(3, &p(&["*"]));
        s.insert(4, &p(&["payment.refund.*", "payment.*"]));
        let table: &[(&str, &[i64])] = &[
            ("payment.received", &[1, 2, 3, 4]),
            ("payment.refund.created", &[1, 3, 4]),
            ("payment", &[3]),
            ("payment.", &[3]),
            ("payments.x", &[3]),
            ("order.created", &[2, 3]),
        ];
        for (event_type, want) in table {
            assert_eq!(s.matching(event_type), *want, "{event_type}");
        }
        s.insert(2, &p(&["order.created"]));
        assert_eq!(s.matching("payment.received"), [1, 3, 4]);
        s.remove(3);
        s.remove(3);
        assert_eq!(s.matching("order.created"), [2]);
        assert_eq!(s.len(), 3);
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            "[ab]{1,2}(\\.[ab]{1,2}){0,2}",
            "[ab]{1,2}(\\.[ab]{1,2}){0,1}\\.\\*",
        ]
    }

    proptest! {
        #[test]
        fn subscriptions_agree_with_matching_every_pattern(
            subscribers in proptest::collection::vec(proptest::collection::vec(pattern(), 1..4), 0..12),
            removed in proptest::collection::vec(0usize..12, 0..4),
            event_type in "[ab]{1,2}(\\.[ab]{1,2}){0,3}",
        ) {
            let mut s = Subscriptions::default();
            for (id, patterns) in subscribers.iter().enumerate() {
                s.insert(id as i64, patterns);
            }
            for &r in &removed {
                s.remove(r as i64);
            }
            let want: Vec<i64> = subscribers
                .iter()
                .enumerate()
                .filter(|(id, _)| !removed.contains(id))
                .filter(|(_, patterns)| any_matches(patterns.iter().map(String::as_str), &event_type))
                .map(|(id, _)| id as i64)
                .collect();
            prop_assert_eq!(s.matching(&event_type), want);
        }
    }
}
