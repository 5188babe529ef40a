//! When the fan-out should sleep on LISTEN and when it should poll.
//!
//! A notifying transaction holds a database-wide lock from its pre-commit
//! until its commit is flushed, so while the application's inserts notify
//! they commit one at a time: about one per WAL flush. The fan-out therefore
//! asks for notifications (the `outbox.wakeup` flag) only while events are
//! rare, and polls while they come fast, often enough to find about
//! `poll_batch` events a round (each round is a transaction of its own, so
//! polling faster costs the database more than it saves in latency). "Fast"
//! is a rate decayed over `window`, with hysteresis so that the mode does
//! not flap. A spell of polling also ends once the polls of a span of
//! `quiet` found fewer events than `idle_rate` would bring: the decayed
//! rate of a burst that has stopped would otherwise keep the fan-out
//! polling, each rare event waiting up to `max_poll` un-notified, for most
//! of a second after it.

use std::time::Duration;

/// The thresholds. The defaults switch to polling above 500 events a
/// second and back below 200, polling every 1 to 10 ms meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WakePolicy {
    /// Time constant of the rate estimate.
    pub window: Duration,
    /// At this rate (events per second) or more, poll.
    pub busy_rate: f64,
    /// Below this rate, sleep on notifications again.
    pub idle_rate: f64,
    /// Events a poll should find, at the current rate.
    pub poll_batch: f64,
    /// Shortest and longest pause between two polls.
    pub min_poll: Duration,
    pub max_poll: Duration,
    /// The span over which polls that find fewer than `idle_rate` worth
    /// of events end the spell: the stream has stopped, whatever the
    /// decayed rate still says. Several times the gap between an
    /// application's statements at a high rate (a batch every 10 ms), so
    /// that a steady stream of batches keeps polling.
    pub quiet: Duration,
}

impl Default for WakePolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(200),
            busy_rate: 500.0,
            idle_rate: 200.0,
            // Large enough that under a heavy insert rate the fan-out polls
            // at `max_poll`, not faster: each round is a transaction on the
            // same cores as the application's inserts.
            poll_batch: 128.0,
            min_poll: Duration::from_millis(1),
            max_poll: Duration::from_millis(10),
            quiet: Duration::from_millis(50),
        }
    }
}

/// How to wait for the next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Sleep until notified (or the safety-net poll interval passes).
    Notified,
    /// Poll again after this pause; notifications are not needed.
    Poll(Duration),
}

/// The event rate seen by the fan-out, decayed exponentially, and the mode
/// it implies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Events per second.
    rate: f64,
    /// Seconds since an arbitrary origin of the last observation.
    at: f64,
    /// While polling: when the current span of `quiet` began, and the
    /// events found in it.
    span_from: f64,
    span_events: usize,
    busy: bool,
}

impl Activity {
    /// Records that a round found `events` at time `now` (seconds since any
    /// fixed origin) and says how to wait for the next one.
    pub fn observe(&mut self, events: usize, now: f64, policy: &WakePolicy) -> Wait {
        let tau = policy.window.as_secs_f64().max(1e-6);
        let dt = (now - self.at).max(0.0);
        self.rate = self.rate * (-dt / tau).exp() + events as f64 / tau;
        self.at = now;
        let quiet = policy.quiet.as_secs_f64();
        if self.busy {
            self.span_events += events;
            if now - self.span_from >= quiet {
                if (self.span_events as f64) < policy.idle_rate * quiet {
                    // The burst is over: what comes next is judged afresh.
                    self.rate = 0.0;
                }
                self.span_from = now;
                self.span_events = 0;
            }
        }
        let was_busy = self.busy;
        self.busy = if self.busy {
            self.rate >= policy.idle_rate
        } else {
            self.rate >= policy.busy_rate
        };
        if self.busy && !was_busy {
            self.span_from = now;
            self.span_events = 0;
        }
        if self.busy {
            let pause = Duration::from_secs_f64(policy.poll_batch / self.rate.max(1.0));
            Wait::Poll(pause.clamp(policy.min_poll, policy.max_poll))
        } else {
            Wait::Notified
        }
    }

    /// Events per second, as of the last observation.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `per_round` events every `every` seconds for `rounds` rounds,
    /// starting at `t`; returns the last answer and the time after.
    fn feed(a: &mut Activity, t: f64, per_round: usize, every: f64, rounds: usize) -> (Wait, f64) {
        let policy = WakePolicy::default();
        let mut wait = Wait::Notified;
        let mut now = t;
        for _ in 0..rounds {
            now += every;
            wait = a.observe(per_round, now, &policy);
        }
        (wait, now)
    }

    #[test]
    fn a_trickle_sleeps_on_notifications() {
        let mut a = Activity::default();
        // 100 events a second, one at a time: the latency benchmark's load.
        let (wait, _) = feed(&mut a, 0.0, 1, 0.01, 500);
        assert_eq!(wait, Wait::Notified);
        assert!((a.rate() - 100.0).abs() < 10.0, "rate {}", a.rate());
    }

    #[test]
    fn a_steady_stream_polls_and_an_idle_daemon_goes_back_to_sleep() {
        let mut a = Activity::default();
        // 30,000 events a second in rounds of 30 every millisecond: poll
        // so that a round finds about 128.
        let (wait, t) = feed(&mut a, 0.0, 30, 0.001, 1000);
        let Wait::Poll(pause) = wait else {
            panic!("{wait:?}")
        };
        assert!(
            (pause.as_secs_f64() - 128.0 / 30_000.0).abs() < 0.001,
            "{pause:?}"
        );
        // Faster still: the shortest pause.
        let (wait, t) = feed(&mut a, t, 300, 0.001, 1000);
        assert_eq!(wait, Wait::Poll(Duration::from_millis(1)));
        // Then nothing: polling stops within a few windows.
        let (wait, _) = feed(&mut a, t, 0, 0.001, 2000);
        assert_eq!(wait, Wait::Notified);
    }

    #[test]
    fn one_burst_does_not_keep_the_daemon_polling() {
        let mut a = Activity::default();
        let policy = WakePolicy::default();
        // 500 events at once (a batch insert) look busy at first...
        assert!(matches!(a.observe(500, 1.0, &policy), Wait::Poll(_)));
        // ...and a second of empty polls later the daemon sleeps again.
        let mut now = 1.0;
        let mut wait = Wait::Notified;
        while now < 2.0 {
            now += 0.001;
            wait = a.observe(0, now, &policy);
        }
        assert_eq!(wait, Wait::Notified);
    }

    #[test]
    fn a_trickle_after_a_burst_is_notified_at_once() {
        let policy = WakePolicy::default();
        let mut a = Activity::default();
        // 15,000 events a second for two seconds (a backlog fanned out)...
        let (wait, t) = feed(&mut a, 0.0, 150, 0.01, 200);
        assert!(matches!(wait, Wait::Poll(_)));
        // ...then polls that find a tenant's trickle, an event every 50
        // ms: notified again within two spans of `quiet`, not once the
        // decayed rate has fallen below idle_rate.
        let mut now = t;
        let mut wait = Wait::Poll(policy.max_poll);
        let mut polls = 0;
        while wait != Wait::Notified {
            now += 0.01;
            polls += 1;
            wait = a.observe(usize::from(polls % 5 == 0), now, &policy);
        }
        assert!(
            now - t <= 2.0 * policy.quiet.as_secs_f64() + 0.011,
            "{}",
            now - t
        );
        // The trickle stays notified.
        let (wait, _) = feed(&mut a, now, 1, 0.05, 40);
        assert_eq!(wait, Wait::Notified);
        assert!(policy.quiet > policy.max_poll);
    }

    #[test]
    fn batches_every_ten_milliseconds_keep_polling() {
        // 20,000 events a second as a statement of 200 every 10 ms, the
        // polls finding one statement's events or none in turn.
        let mut a = Activity::default();
        let (wait, t) = feed(&mut a, 0.0, 200, 0.01, 100);
        assert!(matches!(wait, Wait::Poll(_)));
        let mut now = t;
        for _ in 0..500 {
            now += 0.005;
            assert!(matches!(
                a.observe(0, now, &WakePolicy::default()),
                Wait::Poll(_)
            ));
            now += 0.005;
            assert!(matches!(
                a.observe(200, now, &WakePolicy::default()),
                Wait::Poll(_)
            ));
        }
    }

    #[test]
    fn hysteresis_keeps_a_rate_between_the_thresholds_in_its_mode() {
        let policy = WakePolicy::default();
        // 300 events a second: between idle_rate and busy_rate.
        let mut calm = Activity::default();
        let (wait, _) = feed(&mut calm, 0.0, 3, 0.01, 500);
        assert_eq!(wait, Wait::Notified, "never busy, stays asleep");
        let mut busy = Activity::default();
        let (wait, t) = feed(&mut busy, 0.0, 10, 0.01, 100);
        assert!(matches!(wait, Wait::Poll(_)));
        let (wait, _) = feed(&mut busy, t, 3, 0.01, 500);
        assert_eq!(wait, Wait::Poll(policy.max_poll), "busy, stays polling");
    }

    #[test]
    fn time_going_backwards_is_not_a_burst() {
        let mut a = Activity::default();
        let policy = WakePolicy::default();
        a.observe(10, 5.0, &policy);
        let before = a.rate();
        a.observe(0, 4.0, &policy);
        assert!(a.rate() <= before);
    }
}
