//! Rate limits per webhook: one token bucket per webhook, shared by every
//! replica through the database, taken from in small grants.
//!
//! The bucket refills at the webhook's rate and holds at most `burst`
//! tokens, so in any second at most `rate + burst` requests go out however
//! many replicas take from it. A replica asks for a grant only while
//! deliveries wait for a token, so a grant is spent as soon as it arrives;
//! when the bucket is short, the answer says how long until a grant's worth
//! is there. This module is the arithmetic; `outbox.take_rate_tokens`
//! (crates/db/migrations/V19__rate_limits.sql) runs the same under the
//! bucket row's lock, and the SQL tests check that the two agree.

use std::time::Duration;

/// The seconds of refill a grant is worth: small enough that a replica
/// never sits on tokens another could use, large enough that at high rates
/// a grant covers many requests (one round trip per grant).
pub const GRANT_SECONDS: f64 = 0.04;

/// The seconds of refill the bucket holds: the most that can go out at once
/// after a quiet spell, and the slack a late replica has before refill is
/// lost (the bucket is full).
pub const BURST_SECONDS: f64 = 0.1;

/// The lowest rate a run of `429`s can bring a webhook to, per second.
pub const MIN_RATE: f64 = 0.1;

/// A slowdown halves the rate again only when the last one began at least
/// this long ago: the requests in flight when the first `429` came answer
/// `429` too, and they all report the same overload.
pub const SLOWDOWN_SETTLE_SECONDS: f64 = 1.0;

/// The longest a `Retry-After` slows a whole webhook down.
pub const MAX_SLOWDOWN: Duration = Duration::from_secs(3600);

/// A bucket's size for a rate: what a grant is at least (unless fewer are
/// wanted) and what the bucket holds at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Tokens per second.
    pub rate: f64,
    /// The smallest grant given (fewer only when fewer are wanted).
    pub grant: u32,
    /// The most tokens the bucket holds; never below `grant`.
    pub burst: f64,
}

impl Shape {
    /// The shape for `rate` tokens a second (`rate > 0`).
    pub fn new(rate: f64) -> Shape {
        let grant = (rate * GRANT_SECONDS).ceil().max(1.0);
        Shape {
            rate,
            grant: grant as u32,
            burst: (rate * BURST_SECONDS).max(grant),
        }
    }
}

/// The bucket's state: tokens left at `at` (seconds on any fixed clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at: f64,
}

/// What a take gives: `granted` tokens now, or none and how long until a
/// grant's worth is there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub granted: u32,
    pub wait: Duration,
}

impl Bucket {
    /// A bucket first used at `at`: full.
    pub fn full(shape: &Shape, at: f64) -> Bucket {
        Bucket {
            tokens: shape.burst,
            at,
        }
    }

    /// The bucket refilled up to `now`; a `now` behind `at` (a caller whose
    /// clock reading came before another's take) refills nothing.
    pub fn refilled(self, shape: &Shape, now: f64) -> Bucket {
        let elapsed = (now - self.at).max(0.0);
        Bucket {
            tokens: (self.tokens + shape.rate * elapsed).min(shape.burst),
            at: self.at.max(now),
        }
    }

    /// Takes up to `wanted` tokens at `now`: all whole tokens there (at most
    /// `wanted`) once at least a grant's worth is (or `wanted`, if smaller).
    pub fn take(&mut self, shape: &Shape, now: f64, wanted: u32) -> Grant {
        *self = self.refilled(shape, now);
        let least = wanted.min(shape.grant);
        if wanted == 0 {
            return Grant {
                granted: 0,
                wait: Duration::ZERO,
            };
        }
        if self.tokens + 1e-9 >= f64::from(least) {
            let granted = (self.tokens + 1e-9).floor().min(f64::from(wanted)) as u32;
            self.tokens = (self.tokens - f64::from(granted)).max(0.0);
            Grant {
                granted,
                wait: Duration::ZERO,
            }
        } else {
            // At least a microsecond: a wait that rounds to nothing would
            // have the caller ask again at once for the same answer.
            let missing = f64::from(least) - self.tokens;
            Grant {
                granted: 0,
                wait: Duration::from_secs_f64((missing / shape.rate).max(1e-6)),
            }
        }
    }
}

/// The rate a webhook limited to `limit` gets after a `429` with
/// `Retry-After`, given the slowdown in force (its rate, and how long ago
/// it began) if any: half of what it had, at least `MIN_RATE`; unchanged
/// while the slowdown in force is younger than `SLOWDOWN_SETTLE_SECONDS`.
pub fn slowed_rate(limit: f64, current: Option<(f64, f64)>) -> f64 {
    match current {
        Some((rate, age)) if age < SLOWDOWN_SETTLE_SECONDS => rate,
        Some((rate, _)) => (rate / 2.0).max(MIN_RATE.min(limit)),
        None => (limit / 2.0).max(MIN_RATE.min(limit)),
    }
}

/// How long a `Retry-After` slows the whole webhook down.
pub fn slowdown(retry_after: Duration) -> Duration {
    retry_after.min(MAX_SLOWDOWN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes_of_common_rates() {
        for (rate, grant, burst) in [
            (1.0, 1, 1.0),
            (10.0, 1, 1.0),
            (50.0, 2, 5.0),
            (100.0, 4, 10.0),
            (1000.0, 40, 100.0),
            (0.1, 1, 1.0),
        ] {
            let s = Shape::new(rate);
            assert_eq!((s.grant, s.burst), (grant, burst), "rate {rate}");
        }
    }

    #[test]
    fn a_fresh_bucket_gives_its_burst_then_waits_for_a_grant() {
        let shape = Shape::new(50.0);
        let mut b = Bucket::full(&shape, 0.0);
        assert_eq!(b.take(&shape, 0.0, 100).granted, 5);
        let g = b.take(&shape, 0.0, 100);
        assert_eq!(g.granted, 0);
        assert_eq!(g.wait, Duration::from_millis(40), "2 tokens at 50/s");
        assert_eq!(b.take(&shape, 0.04, 100).granted, 2);
    }

    #[test]
    fn fewer_wanted_than_a_grant_are_given_as_soon_as_they_are_there() {
        let shape = Shape::new(50.0);
        let mut b = Bucket {
            tokens: 1.0,
            at: 0.0,
        };
        assert_eq!(b.take(&shape, 0.0, 1).granted, 1);
        let g = b.take(&shape, 0.0, 1);
        assert_eq!((g.granted, g.wait), (0, Duration::from_millis(20)));
    }

    #[test]
    fn a_clock_reading_behind_the_last_take_refills_nothing() {
        let shape = Shape::new(10.0);
        let b = Bucket {
            tokens: 0.5,
            at: 5.0,
        }
        .refilled(&shape, 4.0);
        assert_eq!(
            b,
            Bucket {
                tokens: 0.5,
                at: 5.0
            }
        );
    }

    #[test]
    fn slowdowns_halve_once_per_settle_time_down_to_the_floor() {
        assert_eq!(slowed_rate(50.0, None), 25.0);
        assert_eq!(slowed_rate(50.0, Some((25.0, 0.2))), 25.0, "same overload");
        assert_eq!(slowed_rate(50.0, Some((25.0, 1.5))), 12.5);
        assert_eq!(slowed_rate(50.0, Some((0.15, 2.0))), MIN_RATE);
        assert_eq!(slowed_rate(0.05, None), 0.05, "never above the limit");
        assert_eq!(slowdown(Duration::from_secs(7200)), MAX_SLOWDOWN);
        assert_eq!(slowdown(Duration::from_secs(3)), Duration::from_secs(3));
    }

    /// Replicas taking at random moments, as fast as the bucket lets them.
    fn takes() -> impl Strategy<Value = Vec<(f64, u32)>> {
        prop::collection::vec((0.0f64..0.2, 0u32..60), 1..300)
    }

    proptest! {
        /// However takes are timed, what was granted by time t is at most
        /// the burst plus the refill since the start.
        #[test]
        fn never_grants_more_than_burst_plus_refill(
            rate in 0.1f64..2000.0,
            steps in takes(),
        ) {
            let shape = Shape::new(rate);
            let mut b = Bucket::full(&shape, 0.0);
            let (mut now, mut total) = (0.0, 0u64);
            for (gap, wanted) in steps {
                now += gap;
                let g = b.take(&shape, now, wanted);
                prop_assert!(g.granted <= wanted);
                total += u64::from(g.granted);
                prop_assert!(total as f64 <= shape.burst + rate * now + 1e-6,
                    "granted {} by {}s at {}/s", total, now, rate);
            }
        }

        /// A taker that comes back when told gets the whole rate: after any
        /// span, what was granted is within a grant of the refill.
        #[test]
        fn a_taker_that_waits_as_told_gets_the_whole_rate(
            rate in 1.0f64..2000.0,
            wanted in 1u32..100,
        ) {
            let shape = Shape::new(rate);
            let mut b = Bucket { tokens: 0.0, at: 0.0 };
            let (mut now, mut total) = (0.0, 0u64);
            while now < 10.0 {
                let g = b.take(&shape, now, wanted);
                total += u64::from(g.granted);
                now += if g.granted > 0 { 0.0 } else { g.wait.as_secs_f64() };
            }
            let expected = rate * now;
            prop_assert!((total as f64) >= expected - f64::from(shape.grant.max(wanted)) - 1.0,
                "granted {} in {}s at {}/s", total, now, rate);
            prop_assert!((total as f64) <= expected + 1.0);
        }

        /// The bucket never holds more than its burst nor less than nothing.
        #[test]
        fn tokens_stay_within_the_bucket(rate in 0.1f64..5000.0, steps in takes()) {
            let shape = Shape::new(rate);
            let mut b = Bucket::full(&shape, 0.0);
            let mut now = 0.0;
            for (gap, wanted) in steps {
                now += gap;
                b.take(&shape, now, wanted);
                prop_assert!(b.tokens >= 0.0 && b.tokens <= shape.burst + 1e-9);
            }
        }
    }
}
