//! Fuzzes what a receiver sends back: the `Retry-After` header value through
//! `outcome::parse_retry_after` (delta-seconds or an HTTP-date, parsed by `httpdate`),
//! then the status code and that delay through `outcome::classify` and
//! `RetryPolicy::next_delay`, with arbitrary clocks, attempt numbers, jitter draws and
//! policies. Checks: nothing panics, even for a policy `validate` refuses or a NaN draw;
//! delta-seconds parse exactly; a date's delay shrinks second for second as the clock
//! advances; with a valid policy a Retry-After is honoured up to `max_delay` but never
//! pushes a retry past `max(max_delay, own backoff)`; only 2xx is delivered, only 410 is
//! gone, an exhausted delivery never retries, and Retry-After only counts on 429/503.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outboxd_core::outcome::{classify, parse_retry_after, AttemptResult, Verdict};
use outboxd_core::retry::{RetryPolicy, MIN_DELAY};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    now: i64,
    later: u32,
    status: u16,
    attempt: u32,
    unit: f64,
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: f64,
    /// Last, so it takes the rest of the input and dictionary tokens land in it.
    value: &'a str,
}

fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

fuzz_target!(|input: Input<'_>| {
    let value = input.value;
    let parsed = parse_retry_after(value, input.now);

    // Delta-seconds: exactly the number, or None when it does not fit in u64.
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(parsed, trimmed.parse::<u64>().ok().map(Duration::from_secs));
    } else if let Some(now2) = input.now.checked_add(i64::from(input.later)) {
        // An HTTP-date: whether it parses does not depend on the clock, and the delay
        // counts down with it, reaching zero (never negative) once the date is past.
        let parsed2 = parse_retry_after(value, now2);
        assert_eq!(parsed.is_some(), parsed2.is_some(), "{value:?}");
        if let (Some(d), Some(d2)) = (parsed, parsed2) {
            assert_eq!(d.subsec_nanos(), 0);
            if d.as_secs() < i64::MAX as u64 {
                assert_eq!(
                    d2,
                    d.saturating_sub(Duration::from_secs(u64::from(input.later)))
                );
            }
        }
    }

    let policy = RetryPolicy {
        max_attempts: input.max_attempts % 64,
        base_delay: input.base_delay,
        max_delay: input.max_delay,
        jitter: input.jitter,
    };
    let attempt = input.attempt;
    let unit = input.unit;
    let result = AttemptResult::Response {
        status: input.status,
        retry_after: parsed,
    };
    // Must not panic whatever the policy and draw.
    let verdict = classify(&result, attempt, &policy, unit);
    let next = policy.next_delay(attempt, unit, parsed);
    let own = policy.delay(attempt, unit);

    if policy.validate().is_err() {
        return;
    }

    // The cap: Retry-After is honoured up to max_delay and never beyond it.
    assert!(own >= MIN_DELAY);
    assert!(own <= scale(policy.max_delay, 1.0 + policy.jitter).max(MIN_DELAY));
    assert!(next >= own);
    assert!(
        next <= own.max(policy.max_delay),
        "next {next:?} own {own:?}"
    );
    if let Some(asked) = parsed {
        assert!(next >= asked.min(policy.max_delay));
    } else {
        assert_eq!(next, own);
    }

    let status = input.status;
    match verdict {
        Verdict::Delivered => assert!((200..300).contains(&status)),
        Verdict::Gone => assert_eq!(status, 410),
        Verdict::Failed => {
            assert!(!(200..300).contains(&status) && status != 410);
            assert!(policy.is_exhausted(attempt));
        }
        Verdict::Retry { after } => {
            assert!(!(200..300).contains(&status) && status != 410);
            assert!(!policy.is_exhausted(attempt));
            let honoured = if matches!(status, 429 | 503) {
                parsed
            } else {
                None
            };
            assert_eq!(after, policy.next_delay(attempt, unit, honoured));
        }
    }
});
