//! Ordered delivery per key: which delivery of a (webhook, ordering key) may
//! be sent next.
//!
//! For a webhook with `ordered` set, the deliveries of one ordering key go
//! out one at a time in event-id order: a delivery may be claimed only when
//! no earlier delivery of its key is unfinished (pending or in flight) and,
//! under the `halt` policy, none has finally failed without an admin
//! releasing it. This is the rule `outbox.is_next_of_key` states in SQL
//! (crates/db/migrations/V20__ordering_keys.sql); the tests here replay
//! random runs against it.

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
    /// Waiting to be sent (first time or for a retry).
    Pending,
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
            Stage::Pending | Stage::InFlight => true,
            Stage::Failed { released } => policy == FailurePolicy::Halt && !released,
            Stage::Delivered | Stage::Cancelled => false,
        }
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

    proptest! {
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
