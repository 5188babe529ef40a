//! The bytes a receiver gets: the stable `webhook-id` and the JSON envelope
//! `{"type":..,"timestamp":..,"data":..}`. The payload is spliced in verbatim because it
//! is PostgreSQL's jsonb output, already valid JSON: re-parsing it on every delivery
//! would cost time on the hot path and could reorder or reformat what the app wrote.

/// Bytes of a response body kept in the delivery log.
pub const MAX_RESPONSE_BODY_KEPT: usize = 4096;

/// Bytes of a response body read before giving up on the rest.
pub const MAX_RESPONSE_BODY_READ: usize = 64 * 1024;

/// The `webhook-id` of an event: the same on every retry and every endpoint, so a
/// receiver can deduplicate redeliveries on it.
pub fn webhook_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// The request body: `{"type":<event_type>,"timestamp":<timestamp>,"data":<payload>}`
/// with no spaces. `payload_json` must already be valid JSON; it is not checked.
pub fn body(event_type: &str, timestamp: &str, payload_json: &str) -> Vec<u8> {
    // 32 covers the fixed keys and punctuation; strings grow only if they need escapes.
    let mut out = Vec::with_capacity(32 + event_type.len() + timestamp.len() + payload_json.len());
    out.extend_from_slice(b"{\"type\":");
    push_json_string(&mut out, event_type);
    out.extend_from_slice(b",\"timestamp\":");
    push_json_string(&mut out, timestamp);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(payload_json.as_bytes());
    out.push(b'}');
    out
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing a JSON string into a Vec cannot fail");
}

/// Lossy UTF-8 text of at most the first `max` bytes of `bytes`, cut before a
/// character that would straddle the limit rather than through it (a cut character
/// would otherwise show up as a replacement character that the receiver never sent).
pub fn truncate_utf8(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut cut = max;
    // A character is at most 4 bytes, so its lead byte is at most 3 bytes before `max`.
    let lowest = max.saturating_sub(3);
    while cut > lowest && is_continuation(bytes[cut]) {
        cut -= 1;
    }
    // Only back off if the lead byte found really starts a character running past
    // `max`; otherwise the bytes are invalid anyway and are kept for the lossy decode.
    if cut == max || cut + utf8_width(bytes[cut]) <= max {
        cut = max;
    }
    String::from_utf8_lossy(&bytes[..cut]).into_owned()
}

fn is_continuation(b: u8) -> bool {
    b & 0b1100_0000 == 0b1000_0000
}

/// Length of the character a lead byte starts; 1 for anything that is not a lead byte.
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn webhook_ids() {
        let cases = [
            (1, "evt_1"),
            (0, "evt_0"),
            (9_007_199_254_740_993, "evt_9007199254740993"),
        ];
        for (id, want) in cases {
            assert_eq!(webhook_id(id), want);
        }
    }

    #[test]
    fn body_is_compact_and_exact() {
        let got = body(
            "payment.received",
            "2026-11-22T14:00:00.123Z",
            r#"{"amount": 100, "currency": "EUR"}"#,
        );
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            r#"{"type":"payment.received","timestamp":"2026-11-22T14:00:00.123Z","data":{"amount": 100, "currency": "EUR"}}"#
        );
    }

    #[test]
    fn body_parses_with_the_right_fields() {
        let cases: &[(&str, &str, &str, Value)] = &[
            ("a.b", "t", "{}", json!({})),
            ("a.b", "t", "null", Value::Null),
            ("a.b", "t", "[1, 2]", json!([1, 2])),
            ("a.b", "t", r#""text""#, json!("text")),
            (
                "quote\"back\\slash",
                "new\nline",
                r#"{"k": "é"}"#,
                json!({"k": "é"}),
            ),
            ("", "", "0", json!(0)),
        ];
        for (event_type, timestamp, payload, data) in cases {
            let parsed: Value = serde_json::from_slice(&body(event_type, timestamp, payload))
                .unwrap_or_else(|e| panic!("{event_type:?}: {e}"));
            assert_eq!(
                parsed,
                json!({"type": event_type, "timestamp": timestamp, "data": data})
            );
        }
    }

    #[test]
    fn body_limits() {
        assert_eq!(MAX_RESPONSE_BODY_KEPT, 4096);
        assert_eq!(MAX_RESPONSE_BODY_READ, 65_536);
        const { assert!(MAX_RESPONSE_BODY_KEPT <= MAX_RESPONSE_BODY_READ) };
    }

    #[test]
    fn truncation_table() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"hello", 10, "hello"),
            (b"hello", 5, "hello"),
            (b"hello", 3, "hel"),
            (b"hello", 0, ""),
            (b"", 0, ""),
            ("aé".as_bytes(), 2, "a"),
            ("aé".as_bytes(), 3, "aé"),
            ("a€b".as_bytes(), 2, "a"),
            ("a€b".as_bytes(), 3, "a"),
            ("a€b".as_bytes(), 4, "a€"),
            ("a😀b".as_bytes(), 4, "a"),
            ("a😀b".as_bytes(), 5, "a😀"),
            ("😀".as_bytes(), 3, ""),
            (b"ab\xffcd", 3, "ab\u{fffd}"),
            (b"ab\x80\x80\x80\x80", 5, "ab\u{fffd}\u{fffd}\u{fffd}"),
            (b"a\xc3\xa9\x80\x80", 4, "a\u{e9}\u{fffd}"),
        ];
        for (bytes, max, want) in cases {
            assert_eq!(truncate_utf8(bytes, *max), *want, "{bytes:?} max {max}");
        }
    }

    proptest! {
        #[test]
        fn truncating_valid_text_gives_a_prefix(s in "\\PC{0,60}", max in 0usize..300) {
            let got = truncate_utf8(s.as_bytes(), max);
            prop_assert!(got.len() <= max);
            prop_assert!(s.starts_with(&got));
            // Nothing more was dropped than the one straddling character.
            prop_assert!(got.len() == s.len() || got.len() + 4 > max);
        }

        #[test]
        fn truncating_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..80) {
            let got = truncate_utf8(&bytes, max);
            let prefix = &bytes[..bytes.len().min(max)];
            prop_assert!(got.len() <= prefix.len() * 3);
        }

        #[test]
        fn any_strings_make_valid_json(event_type in ".{0,40}", timestamp in ".{0,40}", n in any::<i64>()) {
            let payload = format!("{{\"n\":{n}}}");
            let parsed: Value = serde_json::from_slice(&body(&event_type, &timestamp, &payload)).unwrap();
            prop_assert_eq!(parsed, json!({"type": event_type, "timestamp": timestamp, "data": {"n": n}}));
        }
    }
}
