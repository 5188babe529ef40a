//! First attempts and retries in separate lanes, so that a backlog of retries
//! (after an outage, say) never crowds out fresh events, and fresh events
//! never keep the backlog from draining.
//!
//! Two decisions per webhook. How much it may hold per lane: retries its
//! window (`crate::window`), fresh deliveries half a window more, so the
//! fan-out finds room for them while retries fill theirs. And which lane a
//! free request slot serves: fresh three turns in four while both wait, the
//! other lane whenever one is empty, so no slot idles while anything waits.

use crate::window::{share, Windows};

/// Which lane a delivery waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Its first attempt of the current budget: fanned out just now, or
    /// held back by a pause, or replayed.
    Fresh,
    /// At least one attempt of the current budget was made.
    Retry,
}

impl Lane {
    /// The lane of a delivery about to make `attempt` (1-based, of its
    /// current budget): the claim's `least(attempts, 1)`, before the claim
    /// counted this attempt.
    pub fn of_attempt(attempt: i32) -> Lane {
        if attempt <= 1 {
            Lane::Fresh
        } else {
            Lane::Retry
        }
    }
}

/// Of the slots served while both lanes wait, fresh deliveries get this many
/// in a row, then one retry.
pub const FRESH_TURNS: u32 = 3;

/// Whose turn the next free slot of one webhook is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turns {
    fresh_in_a_row: u32,
}

impl Turns {
    /// The lane the next request comes from, given which lanes have a
    /// delivery waiting; `None` when neither has.
    pub fn next(&mut self, fresh_waiting: bool, retries_waiting: bool) -> Option<Lane> {
        let lane = match (fresh_waiting, retries_waiting) {
            (false, false) => return None,
            (true, false) => Lane::Fresh,
            (false, true) => Lane::Retry,
            (true, true) if self.fresh_in_a_row < FRESH_TURNS => Lane::Fresh,
            (true, true) => Lane::Retry,
        };
        self.fresh_in_a_row = match lane {
            Lane::Fresh => self.fresh_in_a_row.saturating_add(1),
            Lane::Retry => 0,
        };
        Some(lane)
    }
}

/// How many more deliveries a webhook may take, per lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rooms {
    /// Fresh deliveries: the rest of the window and its fresh reserve. Also
    /// the most the webhook may take in all.
    pub fresh: usize,
    /// Retries: the rest of the window less the retries held, never more
    /// than `fresh`.
    pub retries: usize,
}

impl Rooms {
    /// The same room for both lanes.
    pub fn both(room: usize) -> Rooms {
        Rooms {
            fresh: room,
            retries: room,
        }
    }
}

/// The window of fresh deliveries: a webhook's window (of its retries) and
/// half as much again, for fresh ones only.
pub const fn fresh_window(window: usize) -> usize {
    window + window / 2
}

impl Windows {
    /// A healthy webhook's whole room while it holds nothing.
    pub fn full_rooms(&self) -> Rooms {
        self.rooms(self.full(), 0, 0)
    }

    /// What a webhook with `window` (its retries' window, `Windows::of` of
    /// its slots) holding `fresh` and `retries` may still take.
    pub fn rooms(&self, window: usize, fresh: usize, retries: usize) -> Rooms {
        let all = fresh_window(window).saturating_sub(fresh + retries);
        Rooms {
            fresh: all,
            retries: window.saturating_sub(retries).min(all),
        }
    }

    /// The rooms worth a claim: each lane's once a quarter of its window is
    /// free or it holds nothing (`Windows::worth_claiming`), else none.
    pub fn rooms_worth_claiming(&self, window: usize, fresh: usize, retries: usize) -> Rooms {
        let rooms = self.rooms(window, fresh, retries);
        let worth = |room, window, held| {
            if self.worth_claiming(room, window, held) {
                room
            } else {
                0
            }
        };
        let fresh_room = worth(rooms.fresh, fresh_window(window), fresh + retries);
        Rooms {
            fresh: fresh_room,
            retries: worth(rooms.retries, window, retries).min(fresh_room),
        }
    }

    /// Whether a webhook whose holding of `lane` dropped by one (to
    /// `fresh` and `retries`) has just made a claim of that lane worth it:
    /// crossed the mark once, as `Windows::just_freed` for one lane.
    pub fn lane_just_freed(&self, lane: Lane, fresh: usize, retries: usize) -> bool {
        match lane {
            Lane::Retry => self.just_freed(retries),
            Lane::Fresh => {
                let window = fresh_window(self.full());
                fresh + retries + share(window) == window
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn windows() -> Windows {
        // Windows of 64 for retries, 96 for fresh deliveries.
        Windows::new(256, 4)
    }

    #[test]
    fn the_lane_follows_the_attempt() {
        assert_eq!(Lane::of_attempt(1), Lane::Fresh);
        assert_eq!(Lane::of_attempt(2), Lane::Retry);
        assert_eq!(Lane::of_attempt(17), Lane::Retry);
    }

    #[test]
    fn fresh_deliveries_get_three_turns_in_four_while_both_wait() {
        let mut turns = Turns::default();
        let picks: Vec<Lane> = (0..8).filter_map(|_| turns.next(true, true)).collect();
        use Lane::{Fresh as F, Retry as R};
        assert_eq!(picks, [F, F, F, R, F, F, F, R]);
        // A lane alone gets every turn.
        assert_eq!(turns.next(false, true), Some(R));
        assert_eq!(turns.next(false, true), Some(R));
        assert_eq!(turns.next(true, false), Some(F));
        assert_eq!(turns.next(false, false), None);
    }

    #[test]
    fn retries_fill_their_window_and_fresh_deliveries_have_half_as_much_again() {
        let w = windows();
        // (fresh held, retries held, fresh room, retry room)
        let table = [
            (0, 0, 96, 64),
            (0, 64, 32, 0),
            (10, 64, 22, 0),
            (0, 40, 56, 24),
            (90, 0, 6, 6),
            (96, 0, 0, 0),
            (50, 50, 0, 0),
        ];
        for (fresh, retries, fresh_room, retry_room) in table {
            assert_eq!(
                w.rooms(64, fresh, retries),
                Rooms {
                    fresh: fresh_room,
                    retries: retry_room
                },
                "holding {fresh} fresh, {retries} retries"
            );
        }
        assert_eq!(w.full_rooms(), w.rooms(64, 0, 0));
        // Paused: nothing.
        assert_eq!(w.rooms(0, 0, 0), Rooms::default());
    }

    #[test]
    fn a_claim_asks_a_lane_once_a_quarter_of_its_window_is_free() {
        let w = windows();
        // (fresh held, retries held, worth)
        let table = [
            (
                0,
                0,
                Rooms {
                    fresh: 96,
                    retries: 64,
                },
            ),
            // Retries fill theirs: the fresh reserve is still worth a claim.
            (
                0,
                64,
                Rooms {
                    fresh: 32,
                    retries: 0,
                },
            ),
            (
                0,
                49,
                Rooms {
                    fresh: 47,
                    retries: 0,
                },
            ),
            (
                0,
                48,
                Rooms {
                    fresh: 48,
                    retries: 16,
                },
            ),
            (
                73,
                0,
                Rooms {
                    fresh: 0,
                    retries: 0,
                },
            ),
            (
                72,
                0,
                Rooms {
                    fresh: 24,
                    retries: 24,
                },
            ),
        ];
        for (fresh, retries, worth) in table {
            assert_eq!(
                w.rooms_worth_claiming(64, fresh, retries),
                worth,
                "holding {fresh} fresh, {retries} retries"
            );
        }
    }

    #[test]
    fn a_lane_freeing_a_quarter_is_noticed_once() {
        let w = windows();
        let retries: Vec<usize> = (0..=64)
            .rev()
            .filter(|&r| w.lane_just_freed(Lane::Retry, 5, r))
            .collect();
        assert_eq!(retries, [48]);
        let fresh: Vec<usize> = (0..=96)
            .rev()
            .filter(|&f| w.lane_just_freed(Lane::Fresh, f, 0))
            .collect();
        assert_eq!(fresh, [72]);
    }

    proptest! {
        #[test]
        fn rooms_keep_each_lane_within_its_window(
            slots in 0usize..64, fresh in 0usize..2000, retries in 0usize..2000,
        ) {
            let w = windows();
            let window = w.of(slots);
            let rooms = w.rooms(window, fresh, retries);
            prop_assert!(rooms.retries <= rooms.fresh);
            // Taking all of either room stays within its window.
            prop_assert!(retries + rooms.retries <= window.max(retries));
            prop_assert!(fresh + retries + rooms.fresh <= fresh_window(window).max(fresh + retries));
            // What is worth claiming is never more than the room.
            let worth = w.rooms_worth_claiming(window, fresh, retries);
            prop_assert!(worth.fresh <= rooms.fresh && worth.retries <= rooms.retries);
            prop_assert!(worth.retries <= worth.fresh);
        }

        #[test]
        fn no_lane_starves_and_no_turn_is_lost(
            waiting in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..200),
        ) {
            let mut turns = Turns::default();
            let mut retries_skipped = 0;
            for (fresh, retry) in waiting {
                let lane = turns.next(fresh, retry);
                // A slot is served whenever anything waits, from a lane that waits.
                prop_assert_eq!(lane.is_some(), fresh || retry);
                match lane {
                    Some(Lane::Fresh) => prop_assert!(fresh),
                    Some(Lane::Retry) => prop_assert!(retry),
                    None => {}
                }
                // A waiting retry is passed over at most FRESH_TURNS times in a row.
                if retry && lane == Some(Lane::Fresh) {
                    retries_skipped += 1;
                    prop_assert!(retries_skipped <= FRESH_TURNS);
                } else if lane == Some(Lane::Retry) || !retry {
                    retries_skipped = 0;
                }
            }
        }
    }
}
