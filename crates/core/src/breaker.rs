//! The circuit breaker of one webhook: after `threshold` failures in a row it
//! opens for a cooldown, during which the webhook's deliveries are not sent (and
//! so spend none of their attempts); then one probe is let through, and its result
//! closes the breaker or opens it again for twice as long, up to `max_cooldown`.
//! A pure state machine: the caller passes the time in and acts on the transition.

use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker; 0 turns it off.
    pub threshold: u32,
    /// The first cooldown; each re-opening after a failed probe doubles it.
    pub cooldown: Duration,
    /// Cap of the doubled cooldown.
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            threshold: 10,
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(10 * 60),
        }
    }
}

impl BreakerPolicy {
    /// The cooldown of the `opened`-th opening in a row (1-based).
    pub fn cooldown(&self, opened: u32) -> Duration {
        let factor = 2u32.checked_pow(opened.saturating_sub(1));
        factor
            .and_then(|f| self.cooldown.checked_mul(f))
            .map_or(self.max_cooldown, |d| d.min(self.max_cooldown))
            .max(self.cooldown.min(self.max_cooldown))
    }
}

/// What a breaker lets through now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Everything, up to the webhook's concurrency limit.
    Closed,
    /// Nothing until the cooldown ends.
    Open { until: Instant },
    /// One request, whose result decides.
    HalfOpen,
}

/// A change the caller acts on (log it, pause the queued deliveries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Opened (again) until this instant, after `failures` failures in a row.
    Opened { until: Instant, failures: u32 },
    /// Closed by a success after having been open.
    Closed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    failures: u32,
    /// Openings since the last success.
    opened: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open { until },
            Some(_) => State::HalfOpen,
        }
    }

    /// Whether the breaker holds nothing worth keeping (closed, no failures).
    pub fn is_idle(&self) -> bool {
        *self == Breaker::default()
    }

    /// Records the result of an attempt that finished at `now`.
    pub fn record(
        &mut self,
        success: bool,
        now: Instant,
        policy: &BreakerPolicy,
    ) -> Option<Transition> {
        if success {
            let was_open = self.open_until.is_some();
            *self = Breaker::default();
            return was_open.then_some(Transition::Closed);
        }
        self.failures = self.failures.saturating_add(1);
        let open_again = match self.state(now) {
            // Requests sent before it opened are still coming back: they change nothing.
            State::Open { .. } => false,
            State::HalfOpen => true,
            State::Closed => policy.threshold > 0 && self.failures >= policy.threshold,
        };
        if !open_again {
            return None;
        }
        self.opened = self.opened.saturating_add(1);
        let until = now + policy.cooldown(self.opened);
        self.open_until = Some(until);
        Some(Transition::Opened {
            until,
            failures: self.failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            threshold: 3,
            cooldown: 10 * S,
            max_cooldown: 35 * S,
        }
    }

    #[test]
    fn opens_after_threshold_failures_in_a_row() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.record(false, t0, &policy()), None);
        assert_eq!(b.record(false, t0, &policy()), None);
        assert_eq!(b.state(t0), State::Closed);
        let opened = b.record(false, t0, &policy());
        assert_eq!(
            opened,
            Some(Transition::Opened {
                until: t0 + 10 * S,
                failures: 3
            })
        );
        assert_eq!(b.state(t0 + 9 * S), State::Open { until: t0 + 10 * S });
        assert_eq!(b.state(t0 + 10 * S), State::HalfOpen);
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..2 {
            b.record(false, t0, &policy());
        }
        assert_eq!(b.record(true, t0, &policy()), None);
        assert!(b.is_idle());
        for _ in 0..2 {
            assert_eq!(b.record(false, t0, &policy()), None);
        }
    }

    #[test]
    fn late_failures_while_open_change_nothing_and_a_late_success_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false, t0, &policy());
        }
        assert_eq!(b.record(false, t0 + S, &policy()), None);
        assert_eq!(b.state(t0 + S), State::Open { until: t0 + 10 * S });
        assert_eq!(
            b.record(true, t0 + 2 * S, &policy()),
            Some(Transition::Closed)
        );
        assert_eq!(b.state(t0 + 2 * S), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.record(false, t0, &policy());
        }
        let mut now = t0;
        for want in [20, 35, 35] {
            now = match b.state(now) {
                State::Open { until } => until,
                s => panic!("expected open, got {s:?}"),
            };
            assert_eq!(b.state(now), State::HalfOpen);
            match b.record(false, now, &policy()) {
                Some(Transition::Opened { until, .. }) => assert_eq!(until - now, want * S),
                t => panic!("expected a re-opening, got {t:?}"),
            }
        }
        assert_eq!(b.record(true, now, &policy()), Some(Transition::Closed));
    }

    #[test]
    fn threshold_zero_never_opens() {
        let off = BreakerPolicy {
            threshold: 0,
            ..policy()
        };
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..1000 {
            assert_eq!(b.record(false, t0, &off), None);
        }
        assert_eq!(b.state(t0), State::Closed);
    }

    proptest! {
        #[test]
        fn cooldown_is_between_the_first_and_the_cap(opened in 0u32..100, first in 1u64..1000, cap in 1u64..100_000) {
            let p = BreakerPolicy { threshold: 1, cooldown: Duration::from_millis(first), max_cooldown: Duration::from_millis(cap) };
            let c = p.cooldown(opened);
            prop_assert!(c <= p.max_cooldown.max(p.cooldown.min(p.max_cooldown)));
            prop_assert!(c >= p.cooldown.min(p.max_cooldown));
            prop_assert!(p.cooldown(opened + 1) >= c);
        }

        #[test]
        fn never_open_without_threshold_failures(results in proptest::collection::vec(any::<bool>(), 0..200)) {
            let t0 = Instant::now();
            let mut b = Breaker::default();
            let mut run = 0u32;
            for ok in results {
                let t = b.record(ok, t0, &policy());
                run = if ok { 0 } else { run + 1 };
                if let Some(Transition::Opened { failures, .. }) = t {
                    prop_assert!(failures >= 3 && run >= 3);
                }
            }
        }
    }
}
