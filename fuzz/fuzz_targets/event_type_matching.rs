//! Fuzzes `matching`: `is_valid_event_type`, `is_valid_pattern`, `pattern_matches` and
//! `any_matches`. Event types come from applications writing to the outbox and patterns
//! from admins subscribing webhooks, so both are arbitrary strings (non-ASCII included,
//! which matters because `pattern_matches` indexes bytes). Checks: nothing panics; both
//! validators agree with a plain restatement of their documented grammar;
//! `pattern_matches` agrees with an independent string-based reading of the rule on
//! every input; on valid input it agrees with itself: `*` and the type itself match, a
//! prefix pattern never matches its bare prefix but matches every `prefix.<more>`, an
//! exact pattern matches only itself; `any_matches` is "any of them matches".
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outboxd_core::matching::{
    any_matches, is_valid_event_type, is_valid_pattern, pattern_matches, MAX_EVENT_TYPE_LEN,
};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    pattern: &'a str,
    event_type: &'a str,
    more: &'a str,
    patterns: Vec<&'a str>,
}

fn grammar_event_type(s: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
}

fn grammar_pattern(s: &str) -> bool {
    s == "*" || grammar_event_type(s) || s.strip_suffix(".*").is_some_and(grammar_event_type)
}

/// The documented rule, read with string operations instead of byte indexing.
fn reference_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|child| !child.is_empty()),
        None => pattern == event_type,
    }
}

fuzz_target!(|input: Input<'_>| {
    let (p, e) = (input.pattern, input.event_type);

    assert_eq!(is_valid_event_type(e), grammar_event_type(e), "{e:?}");
    assert_eq!(is_valid_pattern(p), grammar_pattern(p), "{p:?}");
    assert_eq!(
        pattern_matches(p, e),
        reference_matches(p, e),
        "{p:?} vs {e:?}"
    );

    let patterns = &input.patterns;
    assert_eq!(
        any_matches(patterns.iter().copied(), e),
        patterns.iter().any(|q| pattern_matches(q, e))
    );

    if is_valid_event_type(e) {
        assert!(is_valid_pattern(e));
        assert!(pattern_matches(e, e));
        assert!(pattern_matches("*", e));
        let namespace = format!("{e}.*");
        assert!(is_valid_pattern(&namespace));
        assert!(!pattern_matches(&namespace, e));
        let child = format!("{e}.{}", input.more);
        assert_eq!(pattern_matches(&namespace, &child), !input.more.is_empty());
        // A sibling whose name merely starts with `e` is not below it.
        assert!(!pattern_matches(
            &namespace,
            &format!("{e}x.{}", input.more)
        ));
    }

    if is_valid_pattern(p) && pattern_matches(p, e) && is_valid_event_type(e) {
        match p.strip_suffix(".*") {
            // Everything below a matched type is matched by the same namespace.
            Some(_) => assert!(pattern_matches(p, &format!("{e}.x"))),
            None if p != "*" => assert_eq!(p, e),
            None => {}
        }
    }
});
