//! Fuzzes `message::body`, which frames the request body receivers get from the event
//! type, timestamp text and jsonb payload stored in the outbox (written by applications,
//! so any string, quotes and control characters included). Checks: it never panics; the
//! body is UTF-8; and for any payload that is itself valid JSON the body parses as JSON
//! with exactly `{"type": event_type, "timestamp": timestamp, "data": payload}`, so no
//! event type or timestamp can break out of its string and inject fields.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outboxd_core::message::body;
use serde_json::{json, Value};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    event_type: &'a str,
    timestamp: &'a str,
    payload: &'a str,
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|input: Input<'_>| {
    let out = body(input.event_type, input.timestamp, input.payload);
    assert!(std::str::from_utf8(&out).is_ok());
    assert!(out.starts_with(b"{\"type\":") && out.ends_with(b"}"));

    let Ok(data) = serde_json::from_str::<Value>(input.payload) else {
        // `body` documents that the payload must already be JSON; nothing to check.
        return;
    };
    // The envelope adds one level; serde_json refuses nesting past 128, which is a
    // limit of the checking parser, not of the framing.
    if depth(&data) >= 120 {
        return;
    }
    let parsed: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&out)));
    assert_eq!(
        parsed,
        json!({"type": input.event_type, "timestamp": input.timestamp, "data": data})
    );
});
