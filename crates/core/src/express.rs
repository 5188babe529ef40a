//! How many events a round of a long pass takes while the event stream's
//! express lane is in use (schema V26). A tenant's event committed during a
//! round goes express in the next one, so it waits about a round: rounds
//! are sized in time, from the pace of the last one, not in events. While
//! no other tenant's event comes, the backlog keeps its full batches.

use std::time::Duration;

/// How long a round of a long pass should take while the lane is open.
pub const ROUND: Duration = Duration::from_millis(4);

/// How long after the lane last took an event rounds stay short: a tenant
/// publishing now and then keeps them short between its events.
pub const IN_USE: Duration = Duration::from_secs(1);

/// The fewest events such a round takes: below that, a round's own cost
/// (a transaction of two or three statements) would be most of it.
pub const MIN_EVENTS: i64 = 32;

/// The next round's batch: about `target` worth of events at the pace of
/// the last round (`events` in `took`), at most `limit` and at least
/// `MIN_EVENTS` (or `limit`, when that is smaller). Without a pace to go
/// by, `limit`.
pub fn round_events(limit: i64, last: Option<(usize, Duration)>, target: Duration) -> i64 {
    let Some((events, took)) = last else {
        return limit;
    };
    if events == 0 || took.is_zero() {
        return limit;
    }
    let fits = target.as_secs_f64() * events as f64 / took.as_secs_f64();
    // Saturating: a huge quotient (a round faster than the clock ticks)
    // is `limit`.
    let fits = if fits.is_finite() {
        fits as i64
    } else {
        i64::MAX
    };
    fits.clamp(MIN_EVENTS.min(limit), limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sized_by_the_last_rounds_pace() {
        for (limit, last, want) in [
            // No pace yet: the whole batch.
            (500, None, 500),
            (500, Some((0, 10 * MS)), 500),
            (500, Some((500, Duration::ZERO)), 500),
            // 500 events in 40 ms: 50 fit in 4 ms.
            (500, Some((500, 40 * MS)), 50),
            // Fast rounds: the batch.
            (500, Some((500, MS)), 500),
            // Slow rounds: never below the floor...
            (500, Some((10, 100 * MS)), MIN_EVENTS),
            // ...unless the batch itself is smaller.
            (8, Some((8, 100 * MS)), 8),
        ] {
            assert_eq!(round_events(limit, last, ROUND), want, "{limit} {last:?}");
        }
    }

    proptest! {
        #[test]
        fn within_the_floor_and_the_batch(
            limit in 1i64..20_000,
            events in 0usize..20_000,
            took_us in 0u64..10_000_000,
        ) {
            let n = round_events(limit, Some((events, Duration::from_micros(took_us))), ROUND);
            prop_assert!(n <= limit);
            prop_assert!(n >= MIN_EVENTS.min(limit));
        }

        #[test]
        fn a_slower_pace_never_takes_more(
            limit in 1i64..20_000,
            events in 1usize..20_000,
            took_us in 1u64..1_000_000,
            slower in 1u64..1_000_000,
        ) {
            let fast = round_events(limit, Some((events, Duration::from_micros(took_us))), ROUND);
            let slow = round_events(limit, Some((events, Duration::from_micros(took_us + slower))), ROUND);
            prop_assert!(slow <= fast);
        }
    }
}
