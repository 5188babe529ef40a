//! What one HTTP attempt means for its delivery: delivered, retry later, failed for
//! good, or gone (the receiver unsubscribed with 410). Classification is pure, so the
//! deliverer only reports what happened and the policy lives here, tested by table.
//! Errors render as the short reasons stored in `outbox.delivery_attempts.error`.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use crate::retry::RetryPolicy;

/// Longest error text stored in the delivery log, in characters: enough to diagnose,
/// short enough that a flapping endpoint cannot bloat the log.
pub const MAX_ERROR_CHARS: usize = 200;

/// How the `error` of an attempt refused by the SSRF guard begins; the
/// daemon finds such deliveries by it when it starts.
pub const BLOCKED_PREFIX: &str = "blocked: ";

/// Whether an attempt's `error` says the SSRF guard refused the target.
pub fn is_blocked(error: &str) -> bool {
    error.starts_with(BLOCKED_PREFIX)
}

/// Why an attempt got no HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    Dns(String),
    Tls(String),
    Protocol(String),
    /// The target was refused before connecting (e.g. a private address).
    Blocked(String),
    /// The response body exceeded what the deliverer reads.
    BodyTooLarge,
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, detail) = match self {
            TransportError::Timeout => ("timeout", None),
            TransportError::ConnectionRefused => ("connection refused", None),
            TransportError::ConnectionReset => ("connection reset", None),
            TransportError::Dns(msg) => ("dns: ", Some(msg)),
            TransportError::Tls(msg) => ("tls: ", Some(msg)),
            TransportError::Protocol(msg) => ("protocol: ", Some(msg)),
            TransportError::Blocked(msg) => (BLOCKED_PREFIX, Some(msg)),
            TransportError::BodyTooLarge => ("response too large", None),
            TransportError::Other(msg) => ("", Some(msg)),
        };
        f.write_str(prefix)?;
        if let Some(detail) = detail {
            // The whole line stays within MAX_ERROR_CHARS, cut on a character boundary.
            let budget = MAX_ERROR_CHARS - prefix.chars().count();
            match detail.char_indices().nth(budget) {
                Some((cut, _)) => f.write_str(&detail[..cut])?,
                None => f.write_str(detail)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {}

/// What happened on one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered; `retry_after` is its parsed `Retry-After`, if any.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    Transport(TransportError),
}

/// The decision for a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        after: Duration,
    },
    /// The attempt budget is spent.
    Failed,
    /// 410 Gone: the receiver unsubscribed; the webhook should be disabled.
    Gone,
}

/// The outcome recorded in the delivery log and in metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Delivered,
    Retry,
    Failed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Verdict {
    /// The logged outcome; a Gone delivery is finished without success, so `failed`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Retry { .. } => Outcome::Retry,
            Verdict::Failed | Verdict::Gone => Outcome::Failed,
        }
    }
}

/// Decides what attempt number `attempt` (1-based) means for its delivery.
///
/// 2xx is delivered and 410 is gone. Everything else is retried until the
/// policy is exhausted: redirects included (they are not followed, so a
/// receiver cannot bounce us to another host), and a target refused by the
/// SSRF guard too, since what allows it is a setting an admin changes with
/// a restart, after which the delivery should go without a replay by hand
/// (the daemon makes such deliveries due at once when it starts). `Retry-After` is honoured only on 429 and 503, where HTTP gives it the
/// meaning "come back later"; `unit` is the jitter draw in [0, 1).
pub fn classify(result: &AttemptResult, attempt: u32, policy: &RetryPolicy, unit: f64) -> Verdict {
    let retry_after = match result {
        AttemptResult::Response { status, .. } if is_success(*status) => return Verdict::Delivered,
        AttemptResult::Response { status: 410, .. } => return Verdict::Gone,
        AttemptResult::Response {
            status: 429 | 503,
            retry_after,
        } => *retry_after,
        AttemptResult::Response { .. } | AttemptResult::Transport(_) => None,
    };
    if policy.is_exhausted(attempt) {
        Verdict::Failed
    } else {
        Verdict::Retry {
            after: policy.next_delay(attempt, unit, retry_after),
        }
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// The `error` column for an attempt: the transport failure's short reason, or `None`
/// when the receiver answered (the status code is the record then).
pub fn error_text(result: &AttemptResult) -> Option<String> {
    match result {
        AttemptResult::Response { .. } => None,
        // The reason may quote what a peer sent (a DNS or TLS message).
        AttemptResult::Transport(err) => Some(crate::stored::into_storable(err.to_string())),
    }
}

/// An attempt's duration as the delivery log keeps it (`duration_ms`):
/// milliseconds rounded to the microsecond, which a clock of a network
/// round trip resolves and which reads `0.94`, not `0.9404119999999999`.
pub fn log_millis(d: Duration) -> f64 {
    let micros = (d.as_nanos() + 500) / 1000;
    micros as f64 / 1000.0
}

/// A note for statuses whose meaning differs from a plain failure: a 3xx was not
/// followed, which a reader of the log would otherwise not guess.
pub fn describe_status(status: u16) -> Option<&'static str> {
    (300..400)
        .contains(&status)
        .then_some("redirect not followed")
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP-date turned into a delay from
/// `now_unix` (a date in the past means "now": zero). Garbage gives `None`.
///
/// Dates are parsed by `httpdate`, which accepts the IMF-fixdate form and, as RFC 9110
/// asks of recipients, the obsolete RFC 850 and asctime forms.
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    // httpdate only yields dates from 1970 on; earlier would be in the past anyway.
    let at_unix = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let at_unix = i64::try_from(at_unix).unwrap_or(i64::MAX);
    let ahead = at_unix.saturating_sub(now_unix);
    Some(Duration::from_secs(u64::try_from(ahead).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn response(status: u16) -> AttemptResult {
        AttemptResult::Response {
            status,
            retry_after: None,
        }
    }

    fn response_after(status: u16, secs: u64) -> AttemptResult {
        AttemptResult::Response {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        }
    }

    fn transport(err: TransportError) -> AttemptResult {
        AttemptResult::Transport(err)
    }

    #[test]
    fn classification_table() {
        let p = RetryPolicy::default();
        let retry = |secs| Verdict::Retry {
            after: Duration::from_secs(secs),
        };
        // unit 0.5 means no jitter: attempt 1 waits 10 s, attempt 3 waits 40 s.
        let cases = [
            (response(200), 1, Verdict::Delivered),
            (response(204), 17, Verdict::Delivered),
            (response(299), 99, Verdict::Delivered),
            (response(410), 1, Verdict::Gone),
            (response(410), 17, Verdict::Gone),
            (response(500), 1, retry(10)),
            (response(500), 3, retry(40)),
            (response(500), 16, retry(21_600)),
            (response(500), 17, Verdict::Failed),
            (response(404), 1, retry(10)),
            (response(400), 17, Verdict::Failed),
            (response(301), 1, retry(10)),
            (response(308), 17, Verdict::Failed),
            (response(100), 1, retry(10)),
            (response(0), 1, retry(10)),
            (response_after(429, 600), 1, retry(600)),
            (response_after(503, 600), 1, retry(600)),
            (response_after(503, 86_400), 1, retry(21_600)),
            (response_after(503, 1), 3, retry(40)),
            (response_after(500, 600), 1, retry(10)),
            (response_after(301, 600), 1, retry(10)),
            (response_after(429, 600), 17, Verdict::Failed),
            (response_after(200, 600), 1, Verdict::Delivered),
            (transport(TransportError::Timeout), 1, retry(10)),
            (transport(TransportError::Blocked("x".into())), 1, retry(10)),
            (
                transport(TransportError::Blocked("x".into())),
                17,
                Verdict::Failed,
            ),
            (
                transport(TransportError::ConnectionRefused),
                17,
                Verdict::Failed,
            ),
        ];
        for (result, attempt, want) in cases {
            assert_eq!(
                classify(&result, attempt, &p, 0.5),
                want,
                "{result:?} attempt {attempt}"
            );
        }
    }

    #[test]
    fn verdict_outcomes() {
        let cases = [
            (Verdict::Delivered, Outcome::Delivered, "delivered"),
            (
                Verdict::Retry {
                    after: Duration::from_secs(1),
                },
                Outcome::Retry,
                "retry",
            ),
            (Verdict::Failed, Outcome::Failed, "failed"),
            (Verdict::Gone, Outcome::Failed, "failed"),
        ];
        for (verdict, outcome, text) in cases {
            assert_eq!(verdict.outcome(), outcome);
            assert_eq!(outcome.as_str(), text);
            assert_eq!(outcome.to_string(), text);
        }
    }

    #[test]
    fn transport_error_texts() {
        let cases = [
            (TransportError::Timeout, "timeout"),
            (TransportError::ConnectionRefused, "connection refused"),
            (TransportError::ConnectionReset, "connection reset"),
            (
                TransportError::Dns("no such host".into()),
                "dns: no such host",
            ),
            (TransportError::Tls("bad cert".into()), "tls: bad cert"),
            (
                TransportError::Protocol("invalid header".into()),
                "protocol: invalid header",
            ),
            (
                TransportError::Blocked("private address 10.0.0.5".into()),
                "blocked: private address 10.0.0.5",
            ),
            (TransportError::BodyTooLarge, "response too large"),
            (TransportError::Other("boom".into()), "boom"),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(
                error_text(&AttemptResult::Transport(err)).as_deref(),
                Some(text)
            );
        }
    }

    #[test]
    fn long_messages_are_cut_to_the_limit() {
        let long = "é".repeat(500);
        let text = TransportError::Dns(long.clone()).to_string();
        assert_eq!(text.chars().count(), MAX_ERROR_CHARS);
        assert!(text.starts_with("dns: éé"));
        let text = TransportError::Other(long).to_string();
        assert_eq!(text.chars().count(), MAX_ERROR_CHARS);
        let exact = "x".repeat(MAX_ERROR_CHARS - 5);
        assert_eq!(
            TransportError::Tls(exact.clone()).to_string(),
            format!("tls: {exact}")
        );
    }

    #[test]
    fn responses_have_no_error_text() {
        for status in [200, 204, 301, 404, 410, 500] {
            assert_eq!(error_text(&response(status)), None, "{status}");
        }
    }

    #[test]
    fn status_descriptions() {
        let cases = [
            (200, None),
            (299, None),
            (300, Some("redirect not followed")),
            (301, Some("redirect not followed")),
            (308, Some("redirect not followed")),
            (399, Some("redirect not followed")),
            (400, None),
            (500, None),
        ];
        for (status, want) in cases {
            assert_eq!(describe_status(status), want, "{status}");
        }
    }

    #[test]
    fn retry_after_values() {
        // 2015-10-21T07:28:00Z
        let date = 1_445_412_480;
        let cases: &[(&str, i64, Option<u64>)] = &[
            ("120", 0, Some(120)),
            ("0", 0, Some(0)),
            (" 30 ", 0, Some(30)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date - 90, Some(90)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date, Some(0)),
            ("Wed, 21 Oct 2015 07:28:00 GMT", date + 3600, Some(0)),
            ("Wednesday, 21-Oct-15 07:28:00 GMT", date - 5, Some(5)),
            ("Wed Oct 21 07:28:00 2015", date - 5, Some(5)),
            ("", 0, None),
            ("-5", 0, None),
            ("+5", 0, None),
            ("1.5", 0, None),
            ("soon", 0, None),
            ("99999999999999999999999", 0, None),
            ("Wed, 32 Oct 2015 07:28:00 GMT", 0, None),
            ("Wed, 21 Oct 2015 07:28:00 CET", 0, None),
        ];
        for (value, now, want) in cases {
            assert_eq!(
                parse_retry_after(value, *now),
                want.map(Duration::from_secs),
                "{value:?} at {now}"
            );
        }
    }

    #[test]
    fn logged_durations_are_rounded_to_the_microsecond() {
        assert_eq!(log_millis(Duration::from_nanos(940_411_999)), 940.412);
        assert_eq!(
            log_millis(Duration::from_nanos(940_412)).to_string(),
            "0.94"
        );
        assert_eq!(log_millis(Duration::from_nanos(499)), 0.0);
        assert_eq!(log_millis(Duration::from_millis(1500)), 1500.0);
    }

    #[test]
    fn blocked_errors_are_recognised_by_their_text() {
        let text = TransportError::Blocked("127.0.0.1 is loopback".into()).to_string();
        assert!(is_blocked(&text), "{text}");
        assert!(!is_blocked(&TransportError::Timeout.to_string()));
    }

    fn any_result() -> impl Strategy<Value = AttemptResult> {
        prop_oneof![
            (any::<u16>(), proptest::option::of(0u64..1_000_000)).prop_map(|(status, ra)| {
                AttemptResult::Response {
                    status,
                    retry_after: ra.map(Duration::from_secs),
                }
            }),
            ".{0,300}".prop_map(|m| AttemptResult::Transport(TransportError::Other(m))),
            Just(AttemptResult::Transport(TransportError::Timeout)),
        ]
    }

    proptest! {
        #[test]
        fn exhausted_attempts_never_retry(result in any_result(), attempt in 0u32..40, unit in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let verdict = classify(&result, attempt, &p, unit);
            if let Verdict::Retry { after } = verdict {
                prop_assert!(!p.is_exhausted(attempt));
                prop_assert!(after > Duration::ZERO);
                prop_assert!(after <= p.max_delay.mul_f64(1.0 + p.jitter));
            }
            if p.is_exhausted(attempt) {
                let retried = matches!(verdict, Verdict::Retry { .. });
                prop_assert!(!retried);
            }
        }

        #[test]
        fn only_2xx_is_delivered(status in any::<u16>(), attempt in 1u32..40) {
            let verdict = classify(&response(status), attempt, &RetryPolicy::default(), 0.3);
            prop_assert_eq!(verdict == Verdict::Delivered, (200..300).contains(&status));
            prop_assert_eq!(verdict == Verdict::Gone, status == 410);
        }

        #[test]
        fn error_texts_stay_short(msg in ".{0,400}") {
            for err in [
                TransportError::Dns(msg.clone()),
                TransportError::Blocked(msg.clone()),
                TransportError::Other(msg.clone()),
            ] {
                prop_assert!(err.to_string().chars().count() <= MAX_ERROR_CHARS);
            }
        }

        #[test]
        fn delta_seconds_round_trip(secs in any::<u32>(), now in any::<i64>()) {
            prop_assert_eq!(
                parse_retry_after(&secs.to_string(), now),
                Some(Duration::from_secs(u64::from(secs)))
            );
        }

        #[test]
        fn http_dates_round_trip(at in 0u64..4_000_000_000, ahead in 0i64..1_000_000) {
            let value = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(at));
            let now = at as i64 - ahead;
            prop_assert_eq!(parse_retry_after(&value, now), Some(Duration::from_secs(ahead as u64)));
            prop_assert_eq!(parse_retry_after(&value, at as i64 + ahead), Some(Duration::ZERO));
        }

        #[test]
        fn retry_after_never_panics(value in ".{0,60}", now in any::<i64>()) {
            let _ = parse_retry_after(&value, now);
        }
    }
}
