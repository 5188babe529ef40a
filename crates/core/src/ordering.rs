//! Ordered delivery per key: which delivery of a (webhook, ordering key) may
//! be sent next, and where a new or replayed one waits.
//!
//! For a webhook with `ordered` set, the deliveries of one ordering key go
//! out one at a time in event-id order. A key has at most one *head*
//! (pending or in flight); the others wait `held`, which claims never see,
//! so claims need no ordering rule. A new delivery is held when anything of
//! its key blocks it ([`enters`]); when the head finishes, the earliest held
//! one becomes pending if nothing before it blocks ([`promoted`]); a
//! replayed one waits behind a head ([`replay_enters`]). The SQL forms are
//! `outbox.is_next_of_key` and `outbox.promote_held`
//! (crates/db/migrations/V21__ordered_delivery.sql), the fan-out's insert and
//! `outbox.replay`; the tests here replay random runs against the rules.

use std::fmt;
use std::str::FromStr;

/// What an ordered webhook does when a delivery of a key finally fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The failed delivery stays failed and the key's next one goes.
    #[default]
    Skip,
    /// The key waits until an admin replays or skips the failed one.
    Halt,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Skip => "skip",
            FailurePolicy::Halt => "halt",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy named in `outbox.webhooks.ordering_policy` or a flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an ordering policy: use skip (a failed event stays failed and the next one goes) or halt (the key waits for an admin)")]
pub struct UnknownPolicy(pub String);

impl FromStr for FailurePolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(FailurePolicy::Skip),
            "halt" => Ok(FailurePolicy::Halt),
            other => Err(UnknownPolicy(other.to_owned())),
        }
    }
}

/// Where one delivery of a key stands, as far as ordering cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The key's head, waiting to be sent (first time or for a retry).
    Pending,
    /// Waiting behind an earlier delivery of its key; never claimed.
    Held,
    /// Claimed: a request may be running.
    InFlight,
    Delivered,
    /// Attempts spent (or refused); `released` once an admin skipped it.
    Failed {
        released: bool,
    },
    /// The webhook was disabled or deleted.
    Cancelled,
}

impl Stage {
    /// Whether this delivery keeps the key's later deliveries waiting.
    pub fn blocks_later(self, policy: FailurePolicy) -> bool {
        match self {
            Stage::Pending | Stage::InFlight | Stage::Held => true,
            Stage::Failed { released } => policy == FailurePolicy::Halt && !released,
            Stage::Delivered | Stage::Cancelled => false,
        }
    }

    /// Pending or in flight: the one delivery of its key that may be sent.
    pub fn is_head(self) -> bool {
        matches!(self, Stage::Pending | Stage::InFlight)
    }
}

/// Where a new delivery of the key (its latest event) starts at fan-out:
/// held when anything of the key blocks it (a head, a held one, under
/// `halt` a failure not released), else pending: the new head.
pub fn enters(key: &[Stage], policy: FailurePolicy) -> Stage {
    if key.iter().any(|s| s.blocks_later(policy)) {
        Stage::Held
    } else {
        Stage::Pending
    }
}

/// Which held delivery becomes pending once the head finished (or a
/// failure was released): the earliest held one, when the key has no head
/// and nothing before it blocks (`outbox.promote_held`).
pub fn promoted(key: &[Stage], policy: FailurePolicy) -> Option<usize> {
    if key.iter().any(|s| s.is_head()) {
        return None;
    }
    let first_blocking = key.iter().position(|s| s.blocks_later(policy))?;
    (key[first_blocking] == Stage::Held).then_some(first_blocking)
}

/// Where the finished delivery at `index` goes when replayed: held while
/// the key has a head or something earlier blocks it, else pending. Its
/// event is older than the key's other held ones, so it is the next sent
/// (`outbox.replay`).
pub fn replay_enters(key: &[Stage], index: usize, policy: FailurePolicy) -> Stage {
    let head = key
        .iter()
        .enumerate()
        .any(|(i, s)| i != index && s.is_head());
    if head || key[..index].iter().any(|s| s.blocks_later(policy)) {
        Stage::Held
    } else {
        Stage::Pending
    }
}

/// Whether the delivery at `index` of a key's deliveries (in event-id
/// order) may be claimed now: it is pending and nothing before it blocks.
pub fn is_claimable(key: &[Stage], index: usize, policy: FailurePolicy) -> bool {
    key.get(index) == Some(&Stage::Pending) && !key[..index].iter().any(|s| s.blocks_later(policy))
}

/// The key's delivery that may be claimed now, if any: there is at most one.
pub fn next_claimable(key: &[Stage], policy: FailurePolicy) -> Option<usize> {
    let first_blocking = key.iter().position(|s| s.blocks_later(policy))?;
    (key[first_blocking] == Stage::Pending).then_some(first_blocking)
}

/// Whether the key is halted: under `halt`, its earliest blocking delivery
/// has failed, so nothing more goes until an admin acts on it.
pub fn halted_at(key: &[Stage], policy: FailurePolicy) -> Option<usize> {
    let first_blocking = key.iter().position(|s| s.blocks_later(policy))?;
    matches!(key[first_blocking], Stage::Failed { .. }).then_some(first_blocking)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Stage::*;

    const FAILED: Stage = Failed { released: false };

    #[test]
    fn policies_parse_and_print() {
        for p in [FailurePolicy::Skip, FailurePolicy::Halt] {
            assert_eq!(p.as_str().parse::<FailurePolicy>(), Ok(p));
        }
        assert_eq!(FailurePolicy::default(), FailurePolicy::Skip);
        let e = "stop".parse::<FailurePolicy>().unwrap_err().to_string();
        assert!(e.contains("skip") && e.contains("halt"), "{e}");
    }

    #[test]
    fn which_delivery_of_a_key_goes_next() {
        use FailurePolicy::{Halt, Skip};
        let cases: &[(&[Stage], FailurePolicy, Option<usize>)] = &[
            (&[Pending, Pending], Skip, Some(0)),
            (&[InFlight, Pending], Skip, None),
            (&[Delivered, Pending, Pending], Skip, Some(1)),
            (&[FAILED, Pending], Skip, Some(1)),
            (&[FAILED, Pending], Halt, None),
            (&[Failed { released: true }, Pending], Halt, Some(1)),
            (&[Cancelled, Pending], Halt, Some(1)),
            (&[Delivered, Delivered], Skip, None),
            // A replayed old event goes before the key's later pending ones.
            (&[Pending, Delivered, Pending], Skip, Some(0)),
            (&[], Skip, None),
        ];
        for &(key, policy, next) in cases {
            assert_eq!(next_claimable(key, policy), next, "{key:?} under {policy}");
            for i in 0..key.len() {
                assert_eq!(
                    is_claimable(key, i, policy),
                    next == Some(i),
                    "{key:?} #{i}"
                );
            }
        }
        assert_eq!(halted_at(&[Delivered, FAILED, Pending], Halt), Some(1));
        assert_eq!(halted_at(&[Delivered, FAILED, Pending], Skip), None);
        assert_eq!(halted_at(&[InFlight, FAILED], Halt), None);
    }

    #[test]
    fn where_new_and_replayed_deliveries_wait() {
        use FailurePolicy::{Halt, Skip};
        assert_eq!(enters(&[], Skip), Pending);
        assert_eq!(enters(&[Delivered, FAILED], Skip), Pending);
        assert_eq!(enters(&[Delivered, FAILED], Halt), Held);
        assert_eq!(enters(&[InFlight], Skip), Held);
        assert_eq!(
            enters(&[FAILED, Held], Skip),
            Held,
            "a held one stays ahead"
        );
        assert_eq!(promoted(&[Delivered, Held, Held], Skip), Some(1));
        assert_eq!(promoted(&[InFlight, Held], Skip), None);
        assert_eq!(promoted(&[FAILED, Held], Halt), None);
        assert_eq!(promoted(&[FAILED, Held], Skip), Some(1));
        assert_eq!(promoted(&[Failed { released: true }, Held], Halt), Some(1));
        assert_eq!(promoted(&[Held, Pending], Skip), None, "one head at a time");
        // A replay waits behind the head and goes before later held ones.
        assert_eq!(replay_enters(&[Delivered, InFlight, Held], 0, Skip), Held);
        assert_eq!(replay_enters(&[Delivered, Delivered], 0, Skip), Pending);
        // Under halt, the failure itself goes; a later event waits for it.
        assert_eq!(replay_enters(&[FAILED, Held], 0, Halt), Pending);
        assert_eq!(replay_enters(&[FAILED, Delivered, Held], 1, Halt), Held);
    }

    /// One step of a run: claim what the rule allows, or finish the
    /// delivery in flight (delivered, or a failure: retried or final).
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Claim,
        Finish {
            ok: bool,
            last_attempt: bool,
        },
        /// An admin releases (skips) a failed delivery.
        Release,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(Step::Claim),
                3 => any::<(bool, bool)>().prop_map(|(ok, last_attempt)| Step::Finish { ok, last_attempt }),
                1 => Just(Step::Release),
            ],
            0..200,
        )
    }

    /// One step of a run of the held/promote protocol: claims take any
    /// pending delivery (they know no rule), results and admin actions
    /// promote, new events and replays enter where the rules say.
    #[derive(Debug, Clone, Copy)]
    enum Move {
        Claim,
        Finish { ok: bool, last_attempt: bool },
        Publish,
        Replay(usize),
        Skip,
        ReplayHalted,
    }

    fn moves() -> impl Strategy<Value = Vec<Move>> {
        prop::collection::vec(
            prop_oneof![
                4 => Just(Move::Claim),
                4 => any::<(bool, bool)>().prop_map(|(ok, last_attempt)| Move::Finish { ok, last_attempt }),
                3 => Just(Move::Publish),
                1 => (0usize..16).prop_map(Move::Replay),
                1 => Just(Move::Skip),
                1 => Just(Move::ReplayHalted),
            ],
            0..300,
        )
    }

    fn promote(key: &mut [Stage], policy: FailurePolicy) {
        if let Some(i) = promoted(key, policy) {
            key[i] = Pending;
        }
    }

    proptest! {
        /// With held deliveries and promotion: a key never has two heads,
        /// first deliveries reach the receiver in event order, and once
        /// the run stops changing things and the receiver answers, every
        /// delivery is delivered unless its key is halted (no lost
        /// wake-up leaves a held one behind).
        #[test]
        fn held_deliveries_go_one_at_a_time_and_none_is_forgotten(
            halt in any::<bool>(),
            run in moves(),
        ) {
            let policy = if halt { FailurePolicy::Halt } else { FailurePolicy::Skip };
            let mut key: Vec<Stage> = Vec::new();
            let mut replayed = vec![];
            let mut sent = Vec::new();
            for step in run {
                match step {
                    Move::Claim => {
                        if let Some(i) = key.iter().position(|s| *s == Pending) {
                            key[i] = InFlight;
                        }
                    }
                    Move::Finish { ok, last_attempt } => {
                        if let Some(i) = key.iter().position(|s| *s == InFlight) {
                            key[i] = match (ok, last_attempt) {
                                (true, _) => { sent.push(i); Delivered }
                                (false, false) => Pending,
                                (false, true) => FAILED,
                            };
                            promote(&mut key, policy);
                        }
                    }
                    Move::Publish => {
                        let s = enters(&key, policy);
                        key.push(s);
                        replayed.push(false);
                    }
                    Move::Replay(i) => {
                        if i < key.len() && matches!(key[i], Delivered | Failed { .. } | Cancelled) {
                            key[i] = replay_enters(&key, i, policy);
                            replayed[i] = true;
                        }
                    }
                    Move::Skip | Move::ReplayHalted => {
                        if let Some(i) = halted_at(&key, policy) {
                            if matches!(step, Move::Skip) {
                                key[i] = Failed { released: true };
                                promote(&mut key, policy);
                            } else {
                                key[i] = replay_enters(&key, i, policy);
                                replayed[i] = true;
                            }
                        }
                    }
                }
                prop_assert!(key.iter().filter(|s| s.is_head()).count() <= 1, "{:?}", key);
            }
            let firsts: Vec<usize> = sent.iter().copied().filter(|&i| !replayed[i]).collect();
            prop_assert!(firsts.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", sent);
            // Drain: claim and deliver until nothing moves.
            while let Some(i) = key.iter().position(|s| s.is_head()) {
                key[i] = Delivered;
                promote(&mut key, policy);
            }
            let halted = halted_at(&key, policy);
            for (i, s) in key.iter().enumerate() {
                prop_assert!(*s != Held || halted.is_some_and(|h| h < i), "left behind: {:?}", key);
            }
        }

        /// However claims, answers and admin actions interleave, a key never
        /// has two deliveries in flight, what the receiver got is in event
        /// order, and under halt nothing after an unreleased failure went out.
        #[test]
        fn a_key_goes_out_one_at_a_time_in_event_order(
            n in 1usize..12,
            halt in any::<bool>(),
            run in steps(),
        ) {
            let policy = if halt { FailurePolicy::Halt } else { FailurePolicy::Skip };
            let mut key = vec![Pending; n];
            let mut sent = Vec::new();
            for step in run {
                match step {
                    Step::Claim => {
                        if let Some(i) = next_claimable(&key, policy) {
                            key[i] = InFlight;
                        }
                    }
                    Step::Finish { ok, last_attempt } => {
                        if let Some(i) = key.iter().position(|s| *s == InFlight) {
                            key[i] = match (ok, last_attempt) {
                                (true, _) => { sent.push(i); Delivered }
                                (false, false) => Pending,
                                (false, true) => FAILED,
                            };
                        }
                    }
                    Step::Release => {
                        if let Some(i) = key.iter().position(|s| *s == FAILED) {
                            key[i] = Failed { released: true };
                        }
                    }
                }
                prop_assert!(key.iter().filter(|s| **s == InFlight).count() <= 1);
            }
            prop_assert!(sent.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", sent);
            if policy == FailurePolicy::Halt {
                for (i, s) in key.iter().enumerate() {
                    if *s == FAILED {
                        prop_assert!(sent.iter().all(|&j| j < i), "sent past a halt: {:?}", sent);
                    }
                }
            }
        }
    }
}
