//! How much a deliverer holds ahead of its requests, and when it claims more.
//!
//! Each webhook holds (running and queued, leased) up to `FACTOR` times the
//! requests it may have running, so the next delivery is at hand when a
//! request finishes and the fan-out hands over batches of a useful size; a
//! slow endpoint fills only its own window. A claim is worth making once a
//! quarter of a window is free (or the webhook holds nothing), so claims
//! come in batches rather than one row at a time. A webhook whose requests
//! take long (an endpoint that hangs until the timeout) holds no more than
//! it can start while a queued delivery's lease still covers its request
//! (`Windows::within_wait`): deeper, its deliveries would only be handed
//! back unsent, and meanwhile fill the deliverer's capacity.

use std::time::Duration;

/// Deliveries held per request slot.
pub const FACTOR: usize = 16;

/// The window rule for one deliverer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Requests running at once, all webhooks together.
    pub concurrency: usize,
    /// Requests running at once for one webhook.
    pub webhook_concurrency: usize,
}

impl Windows {
    pub fn new(concurrency: usize, webhook_concurrency: usize) -> Self {
        Self {
            concurrency,
            webhook_concurrency,
        }
    }

    /// The window of a webhook allowed `slots` requests now (its
    /// concurrency, one probe while its breaker is half-open, none while
    /// paused).
    pub fn of(&self, slots: usize) -> usize {
        FACTOR * slots
    }

    /// `window` cut to what a webhook running `slots` requests at a time,
    /// each taking `took`, starts in half of `wait` (how long a delivery
    /// may wait queued before its lease could run out during its request),
    /// and never below `slots`.
    pub fn within_wait(
        &self,
        window: usize,
        slots: usize,
        took: Duration,
        wait: Duration,
    ) -> usize {
        if took.is_zero() {
            return window;
        }
        // A float cast saturates: a fast endpoint keeps its whole window.
        let starts = (slots as f64 * wait.as_secs_f64() / 2.0 / took.as_secs_f64()) as usize;
        window.min(starts.max(slots))
    }

    /// A healthy webhook's whole window: its room while it holds nothing.
    pub fn full(&self) -> usize {
        self.of(self.webhook_concurrency)
    }

    /// Deliveries held across all webhooks at most.
    pub fn capacity(&self) -> usize {
        self.of(self.concurrency)
    }

    /// Whether asking for `room` more deliveries of a webhook is worth a
    /// claim: a quarter of its window free, or it holds nothing at all.
    pub fn worth_claiming(&self, room: usize, window: usize, held: usize) -> bool {
        room > 0 && (room >= share(window) || held == 0)
    }

    /// Whether the deliverer as a whole should claim, given the room it has
    /// across all webhooks and what it holds: a quarter of its capacity
    /// free (at most a batch), or nothing held.
    pub fn worth_a_claim(&self, room: usize, held: usize, batch: usize) -> bool {
        room >= share(self.capacity()).min(batch.max(1)) || held == 0
    }

    /// Whether a webhook whose holding dropped to `held` has just crossed
    /// the mark where a claim becomes worth it (counted once per crossing,
    /// so a stream of finished requests does not ask for a claim each).
    pub fn just_freed(&self, held: usize) -> bool {
        held + share(self.full()) == self.full()
    }

    /// The room the fan-out needs before it takes a batch of events: a
    /// quarter of a window, so batches do not shrink to a few events.
    pub fn enough_for_fan_out(&self) -> usize {
        share(self.full())
    }
}

/// A quarter of a window, at least one delivery.
pub(crate) fn share(window: usize) -> usize {
    (window / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_cut_window_stays_within_the_window_and_fills_its_slots(
            slots in 0usize..100, factor in 0usize..20, took_ms in 0u64..100_000, wait_s in 0u64..600,
        ) {
            let w = Windows::new(256, 32);
            let window = slots * factor;
            let cut = w.within_wait(window, slots, Duration::from_millis(took_ms), Duration::from_secs(wait_s));
            prop_assert!(cut <= window);
            prop_assert!(cut >= slots.min(window));
        }
    }

    #[test]
    fn windows_are_sixteen_slots_deep() {
        let w = Windows::new(256, 4);
        for (slots, window) in [(0, 0), (1, 16), (4, 64)] {
            assert_eq!(w.of(slots), window, "{slots} slots");
        }
        assert_eq!(w.full(), 64);
        assert_eq!(w.capacity(), 4096);
    }

    #[test]
    fn a_webhook_claims_once_a_quarter_of_its_window_is_free() {
        let w = Windows::new(256, 4);
        // (room, window, held, worth)
        let table = [
            (0, 64, 64, false),
            (15, 64, 49, false),
            (16, 64, 48, true),
            (64, 64, 0, true),
            // A half-open breaker's one probe: a window of 16, any room
            // while it holds nothing.
            (1, 16, 0, true),
            (3, 16, 13, false),
            (4, 16, 12, true),
            // Paused: no room, no claim.
            (0, 0, 0, false),
        ];
        for (room, window, held, worth) in table {
            assert_eq!(
                w.worth_claiming(room, window, held),
                worth,
                "room {room} of {window}, holding {held}"
            );
        }
    }

    #[test]
    fn the_deliverer_claims_when_a_quarter_is_free_at_most_a_batch() {
        let w = Windows::new(256, 4);
        // (room, held, batch, worth)
        let table = [
            (1023, 3073, 5000, false),
            (1024, 3072, 5000, true),
            (500, 3596, 500, true),
            (499, 3597, 500, false),
            (0, 0, 500, true),
        ];
        for (room, held, batch, worth) in table {
            assert_eq!(
                w.worth_a_claim(room, held, batch),
                worth,
                "room {room}, held {held}, batch {batch}"
            );
        }
    }

    #[test]
    fn a_slow_webhook_holds_what_it_can_start_before_leases_run_short() {
        let w = Windows::new(256, 32);
        let wait = Duration::from_secs(50);
        let ms = Duration::from_millis;
        // (window, slots, took, cut)
        let table = [
            // Fast: the whole window.
            (512, 32, ms(5), 512),
            (512, 2, ms(5), 512),
            (512, 32, Duration::ZERO, 512),
            // Hanging until a 10 s timeout with two slots: 5 starts in 25 s.
            (512, 2, ms(10_000), 5),
            (512, 32, ms(10_000), 80),
            // Never below its slots, nor above the window.
            (512, 2, ms(1_000_000), 2),
            (0, 0, ms(10_000), 0),
        ];
        for (window, slots, took, cut) in table {
            assert_eq!(
                w.within_wait(window, slots, took, wait),
                cut,
                "window {window}, {slots} slots, requests of {took:?}"
            );
        }
    }

    #[test]
    fn freeing_a_quarter_is_noticed_once() {
        let w = Windows::new(256, 4);
        let crossings: Vec<usize> = (0..=64).rev().filter(|&h| w.just_freed(h)).collect();
        assert_eq!(crossings, [48]);
        assert_eq!(w.enough_for_fan_out(), 16);
        assert_eq!(Windows::new(1, 1).enough_for_fan_out(), 4);
    }
}
