//! The retry schedule: exponential backoff capped at a maximum, spread by jitter.
//! The random draw comes in as `unit` (uniform in [0, 1)) so the schedule is a pure
//! function of its inputs; every computation saturates instead of overflowing, because
//! attempt numbers and configured durations come from outside.

use std::time::Duration;

/// Shortest delay ever returned: a zero delay would make a failing delivery due again at
/// once and spin against the receiver.
pub const MIN_DELAY: Duration = Duration::from_millis(1);

/// The pause of an in-process loop (fan-out, claims) after `failures`
/// database errors in a row: 200 ms doubling to at most 1.6 s, so work
/// resumes soon after the database is back, while an outage costs it only a
/// query a second or so.
pub fn database_backoff(failures: u32) -> Duration {
    Duration::from_millis(100 << failures.clamp(1, 4))
}

/// How failed deliveries are retried.
///
/// The default schedule (17 attempts, 10 s doubling, capped at 6 h) waits after failed
/// attempts 1..=16: 10 s, 20 s, 40 s, ... 10 s * 2^11 = 20 480 s for attempts 1..=12,
/// which sums to 10 s * (2^12 - 1) = 40 950 s; attempts 13..=16 are capped at 6 h each,
/// 4 * 21 600 s = 86 400 s. In total 127 350 s, about 35 h 23 min before jitter: the
/// "day and a half" docs/guarantees.md promises before a delivery is marked failed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; after this many the delivery fails.
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    /// Cap on the un-jittered delay (and on a receiver's Retry-After).
    pub max_delay: Duration,
    /// Spread as a fraction of the delay: 0.25 draws from 75%..125%.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 17,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(6 * 60 * 60),
            jitter: 0.25,
        }
    }
}

/// A retry policy that cannot be used, with what would be accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    #[error("base_delay must be greater than zero")]
    ZeroBaseDelay,
    #[error("max_delay ({max:?}) must be at least base_delay ({base:?})")]
    MaxBelowBase { base: Duration, max: Duration },
    #[error("jitter must be a fraction at least 0 and below 1 (e.g. 0.25), got {0}")]
    Jitter(f64),
}

impl RetryPolicy {
    /// The un-jittered delay after failed attempt `attempt` (1-based):
    /// `min(max_delay, base_delay * 2^(attempt-1))`. Attempt 0 is treated as 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        if self.base_delay.is_zero() {
            return Duration::ZERO;
        }
        // Past 2^31 (or past Duration's range) the product is certainly above any cap.
        2u32.checked_pow(exponent)
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The delay after failed attempt `attempt`: the backoff scaled by
    /// `1 - jitter + 2 * jitter * unit`, never above `max_delay * (1 + jitter)` and never
    /// zero. `unit` is a uniform draw, clamped to [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = clamp_fraction(unit);
        let jitter = clamp_fraction(self.jitter);
        let factor = 1.0 - jitter + 2.0 * jitter * unit;
        let jittered = scale(self.backoff(attempt), factor);
        let ceiling = scale(self.max_delay, 1.0 + jitter);
        jittered.min(ceiling).max(MIN_DELAY)
    }

    /// The delay before the next attempt, honouring a receiver's `Retry-After`: never
    /// sooner than it asks, but it cannot push a retry further out than `max_delay`.
    pub fn next_delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let own = self.delay(attempt, unit);
        match retry_after {
            Some(asked) => own.max(asked.min(self.max_delay)),
            None => own,
        }
    }

    /// True once `attempt` attempts have been made and no further one is allowed.
    pub fn is_exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// Sum of the un-jittered delays between the first and the last attempt, i.e.
    /// `backoff(1) + ... + backoff(max_attempts - 1)`.
    pub fn total_span(&self) -> Duration {
        let retries = self.max_attempts.saturating_sub(1);
        let mut total = Duration::ZERO;
        for attempt in 1..=retries {
            let step = self.backoff(attempt);
            if step == self.max_delay {
                // Every later step is capped too: multiply instead of looping up to 2^32.
                let remaining = retries - attempt + 1;
                let rest = step.checked_mul(remaining).unwrap_or(Duration::MAX);
                return total.saturating_add(rest);
            }
            total = total.saturating_add(step);
        }
        total
    }

    /// Checks the policy is usable: `max_attempts >= 1`, `base_delay > 0`,
    /// `max_delay >= base_delay`, `0 <= jitter < 1`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_attempts == 0 {
            return Err(PolicyError::NoAttempts);
        }
        if self.base_delay.is_zero() {
            return Err(PolicyError::ZeroBaseDelay);
        }
        if self.max_delay < self.base_delay {
            return Err(PolicyError::MaxBelowBase {
                base: self.base_delay,
                max: self.max_delay,
            });
        }
        // Written so that NaN fails too.
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(PolicyError::Jitter(self.jitter));
        }
        Ok(())
    }
}

/// Clamps to [0, 1); NaN becomes 0 so a bad draw or config never panics in `scale`.
fn clamp_fraction(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        0.0
    } else if x >= 1.0 {
        // Largest f64 below 1.
        1.0 - f64::EPSILON / 2.0
    } else {
        x
    }
}

/// `d * factor` for a finite, non-negative factor, saturating at `Duration::MAX`.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_backoff_grows_to_a_cap_of_1600_ms() {
        let ms: Vec<u128> = (0..8).map(|f| database_backoff(f).as_millis()).collect();
        assert_eq!(ms, [200, 200, 400, 800, 1600, 1600, 1600, 1600]);
    }
    use proptest::prelude::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_backoff_schedule() {
        let p = RetryPolicy::default();
        let cases = [
            (0, S(10)),
            (1, S(10)),
            (2, S(20)),
            (3, S(40)),
            (12, S(20_480)),
            (13, S(21_600)),
            (16, S(21_600)),
            (33, S(21_600)),
            (u32::MAX, S(21_600)),
        ];
        for (attempt, want) in cases {
            assert_eq!(p.backoff(attempt), want, "attempt {attempt}");
        }
    }

    #[test]
    fn default_span_is_about_a_day_and_a_half() {
        let p = RetryPolicy::default();
        assert_eq!(p.total_span(), S(127_350));
        assert!(p.total_span() > S(34 * 3600) && p.total_span() < S(37 * 3600));
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn total_span_table() {
        let base = RetryPolicy {
            max_attempts: 1,
            base_delay: S(1),
            max_delay: S(4),
            jitter: 0.0,
        };
        let cases = [
            (1, S(0)),
            (2, S(1)),
            (3, S(3)),
            (4, S(7)),
            (5, S(11)),
            (6, S(15)),
        ];
        for (max_attempts, want) in cases {
            let p = RetryPolicy {
                max_attempts,
                ..base
            };
            assert_eq!(p.total_span(), want, "max_attempts {max_attempts}");
        }
        let huge = RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        };
        assert!(huge.total_span() > S(21_600 * 1_000_000));
    }

    #[test]
    fn jitter_bounds() {
        let p = RetryPolicy::default();
        let cases = [
            (1, 0.0, Duration::from_millis(7_500)),
            (1, 0.5, S(10)),
            (3, 0.5, S(40)),
            (3, 0.0, S(30)),
            (13, 0.5, S(21_600)),
            (13, 0.0, S(16_200)),
            (1, -3.0, Duration::from_millis(7_500)),
            (1, f64::NAN, Duration::from_millis(7_500)),
        ];
        for (attempt, unit, want) in cases {
            assert_eq!(
                p.delay(attempt, unit),
                want,
                "attempt {attempt} unit {unit}"
            );
        }
        // unit at or above 1 is clamped just below 1.
        let top = p.delay(13, 1.0);
        assert!(top <= S(27_000) && top > S(26_999), "{top:?}");
        assert_eq!(p.delay(13, 7.0), top);
    }

    #[test]
    fn delay_is_never_zero() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            jitter: 0.5,
        };
        assert_eq!(p.delay(1, 0.0), MIN_DELAY);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::default();
        let cases = [
            (1, None, S(10)),
            (1, Some(S(5)), S(10)),
            (1, Some(S(120)), S(120)),
            (1, Some(S(86_400)), S(21_600)),
            (13, Some(S(86_400)), S(21_600)),
            (3, Some(Duration::ZERO), S(40)),
        ];
        for (attempt, retry_after, want) in cases {
            assert_eq!(
                p.next_delay(attempt, 0.5, retry_after),
                want,
                "attempt {attempt} retry_after {retry_after:?}"
            );
        }
    }

    #[test]
    fn exhaustion() {
        let p = RetryPolicy::default();
        assert!(!p.is_exhausted(0));
        assert!(!p.is_exhausted(16));
        assert!(p.is_exhausted(17));
        assert!(p.is_exhausted(18));
    }

    #[test]
    fn validation_errors_say_what_is_accepted() {
        let ok = RetryPolicy::default();
        let cases = [
            (
                RetryPolicy {
                    max_attempts: 0,
                    ..ok
                },
                "max_attempts must be at least 1",
            ),
            (
                RetryPolicy {
                    base_delay: Duration::ZERO,
                    ..ok
                },
                "base_delay must be greater than zero",
            ),
            (
                RetryPolicy {
                    max_delay: S(1),
                    ..ok
                },
                "max_delay (1s) must be at least base_delay (10s)",
            ),
            (
                RetryPolicy { jitter: 1.0, ..ok },
                "jitter must be a fraction at least 0 and below 1 (e.g. 0.25), got 1",
            ),
            (
                RetryPolicy { jitter: -0.1, ..ok },
                "jitter must be a fraction at least 0 and below 1 (e.g. 0.25), got -0.1",
            ),
            (
                RetryPolicy {
                    jitter: f64::NAN,
                    ..ok
                },
                "jitter must be a fraction at least 0 and below 1 (e.g. 0.25), got NaN",
            ),
        ];
        for (policy, message) in cases {
            let err = policy.validate().expect_err(message);
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(
            RetryPolicy {
                max_attempts: 1,
                jitter: 0.0,
                max_delay: ok.base_delay,
                ..ok
            }
            .validate(),
            Ok(())
        );
    }

    fn policy() -> impl Strategy<Value = RetryPolicy> {
        (1u32..100, 1u64..100_000, 0u64..10_000_000, 0.0f64..1.0).prop_map(
            |(max_attempts, base_ms, extra_ms, jitter)| RetryPolicy {
                max_attempts,
                base_delay: Duration::from_millis(base_ms),
                max_delay: Duration::from_millis(base_ms + extra_ms),
                jitter,
            },
        )
    }

    proptest! {
        #[test]
        fn generated_policies_validate(p in policy()) {
            prop_assert_eq!(p.validate(), Ok(()));
        }

        #[test]
        fn backoff_is_monotonic_and_capped(p in policy(), attempt in any::<u32>()) {
            let here = p.backoff(attempt);
            prop_assert!(here <= p.max_delay);
            prop_assert!(here >= p.base_delay.min(p.max_delay));
            prop_assert!(p.backoff(attempt.saturating_add(1)) >= here);
        }

        #[test]
        fn delay_stays_within_jitter_band(p in policy(), attempt in any::<u32>(), unit in any::<f64>()) {
            let d = p.delay(attempt, unit);
            let b = p.backoff(attempt).as_secs_f64();
            let slack = 1e-6;
            prop_assert!(d > Duration::ZERO);
            prop_assert!(d.as_secs_f64() <= p.max_delay.as_secs_f64() * (1.0 + p.jitter) + slack);
            prop_assert!(d.as_secs_f64() >= b * (1.0 - p.jitter) - slack);
            prop_assert!(d.as_secs_f64() <= b * (1.0 + p.jitter) + slack);
        }

        #[test]
        fn next_delay_respects_retry_after_up_to_the_cap(p in policy(), attempt in 1u32..100, unit in 0.0f64..1.0, asked_ms in any::<u32>()) {
            let asked = Duration::from_millis(u64::from(asked_ms));
            let d = p.next_delay(attempt, unit, Some(asked));
            prop_assert!(d >= p.delay(attempt, unit));
            prop_assert!(d >= asked.min(p.max_delay));
            prop_assert!(d <= p.delay(attempt, unit).max(p.max_delay));
        }

        #[test]
        fn total_span_sums_backoffs(p in policy()) {
            let sum: Duration = (1..p.max_attempts).map(|a| p.backoff(a)).sum();
            prop_assert_eq!(p.total_span(), sum);
        }

        #[test]
        fn only_the_last_attempt_is_exhausted(p in policy(), attempt in 0u32..200) {
            prop_assert_eq!(p.is_exhausted(attempt), attempt >= p.max_attempts);
        }
    }
}
