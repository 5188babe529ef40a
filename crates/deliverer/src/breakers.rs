//! The circuit breakers of this deliverer's webhooks, and what their
//! transitions do outside the loop.
//!
//! `Breakers` holds a breaker only for a webhook with recent failures (a
//! healthy one costs nothing). A transition's side effects run as tasks of
//! their own so the loop never waits on them: an opening writes the pause
//! (every replica then holds the waiting deliveries back) and hands the
//! webhook's queue back after it; a recovery clears the failure record and
//! makes the events deferred during the pause deliveries and the retries the
//! webhook was waiting for due at once (the replica that clears the shared
//! record does it, once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_core::breaker::{Breaker, BreakerPolicy, State, Transition};
use outboxd_db::{claim, deferred, health, Pool};
use outboxd_metrics as names;
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Breakers {
    map: HashMap<i64, Breaker>,
}

impl Breakers {
    pub fn state(&self, webhook_id: i64, now: Instant) -> State {
        self.map
            .get(&webhook_id)
            .map_or(State::Closed, |b| b.state(now))
    }

    /// Feeds one attempt's result to the webhook's breaker.
    pub fn record(
        &mut self,
        webhook_id: i64,
        success: bool,
        now: Instant,
        policy: &BreakerPolicy,
    ) -> Option<Transition> {
        if policy.threshold == 0 || (success && !self.map.contains_key(&webhook_id)) {
            // Off, or the common case: a healthy webhook has no breaker.
            return None;
        }
        let breaker = self.map.entry(webhook_id).or_default();
        let transition = breaker.record(success, now, policy);
        if breaker.is_idle() {
            self.map.remove(&webhook_id);
        }
        transition
    }

    /// Keeps the breakers of the webhooks `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
        self.map.retain(|&id, _| keep(id));
    }

    pub fn webhooks(&self) -> impl Iterator<Item = &i64> {
        self.map.keys()
    }

    /// How many webhooks are paused or probing.
    pub fn not_closed(&self, now: Instant) -> usize {
        self.map
            .values()
            .filter(|b| b.state(now) != State::Closed)
            .count()
    }
}

/// What an opening writes: the pause, then the queue handed back so it
/// waits for the pause's end like the rest (no replica takes it meanwhile)
/// and every waiting delivery moved to that end, so that a recovery finds
/// the backlog due; and the webhook disabled if it has failed for longer
/// than allowed. At the pause's end `ready` is told, so the probe is
/// claimed then and not at the next poll.
pub(crate) struct Opened {
    pub webhook_id: i64,
    pub pause: Duration,
    pub reason: String,
    pub disable_after: Duration,
    pub queued: Vec<(i64, i64)>,
}

impl Opened {
    pub fn spawn(self, pool: Pool, ready: Arc<Notify>) {
        tokio::spawn(async move {
            let Opened {
                webhook_id,
                pause,
                reason,
                disable_after,
                queued,
            } = self;
            let paused = health::pause(&pool, webhook_id, pause, &reason, disable_after).await;
            // The database's end of the pause is no later than this.
            let ends = tokio::time::Instant::now() + pause;
            if let Err(e) = claim::hand_back(&pool, &queued).await {
                tracing::debug!(webhook_id, error = %e,
                    "could not hand back the paused webhook's queue; its leases will expire");
            }
            let until = match paused {
                Ok(p) if p.disabled => {
                    metrics::counter!(names::WEBHOOKS_DISABLED_TOTAL).increment(1);
                    tracing::warn!(webhook_id, failing_for_more_than = %humantime::format_duration(disable_after),
                        "webhook disabled: it kept failing with no successful delivery");
                    return;
                }
                Ok(p) => p.until,
                Err(e) => {
                    tracing::warn!(webhook_id, error = %e,
                        "could not record the pause; this process still holds the webhook's deliveries back");
                    None
                }
            };
            if let Some(until) = until {
                match health::move_to_pause_end(&pool, webhook_id, until).await {
                    Ok(n) => tracing::debug!(webhook_id, deliveries = n, "deliveries paused"),
                    Err(e) => tracing::warn!(webhook_id, error = %e,
                        "could not move the paused webhook's waiting deliveries to the pause's end; its recovery makes them due"),
                }
            }
            tokio::time::sleep_until(ends).await;
            ready.notify_one();
        });
    }
}

/// A recovery: the webhook's failure record is cleared and, by the replica
/// that cleared it, its waiting retries are made due; `ready` is told.
pub(crate) fn closed(pool: Pool, webhook_id: i64, ready: Arc<Notify>) {
    tracing::info!(webhook_id, "webhook delivered again; pause lifted");
    tokio::spawn(async move {
        let since = match health::healthy(&pool, webhook_id).await {
            Ok(Some(since)) => since,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(webhook_id, error = %e, "could not clear the webhook's failure record");
                return;
            }
        };
        // Its events fanned out while paused first: they are fresh ones.
        match deferred::expand(&pool, webhook_id, &ready).await {
            Ok(rows) if rows > 0 => tracing::info!(
                webhook_id,
                rows,
                "events deferred during the pause made deliveries"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(webhook_id, error = %e,
                "could not make the recovered webhook's deferred events deliveries; the sweep does within a second"),
        }
        match health::make_due(&pool, webhook_id, since, &ready).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(
                        webhook_id,
                        deliveries = n,
                        "waiting retries of the recovered webhook made due"
                    );
                }
            }
            Err(e) => tracing::warn!(webhook_id, error = %e,
                "could not make the recovered webhook's waiting retries due; they are sent when they were scheduled"),
        }
        ready.notify_one();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_webhook_keeps_no_breaker() {
        let (mut b, now) = (Breakers::default(), Instant::now());
        let policy = BreakerPolicy::default();
        assert_eq!(b.record(1, true, now, &policy), None);
        assert_eq!(b.webhooks().count(), 0);
        assert_eq!(b.record(1, false, now, &policy), None);
        assert_eq!(b.webhooks().count(), 1);
        b.record(1, true, now, &policy);
        assert_eq!(b.webhooks().count(), 0, "a success forgets the failure");
    }

    #[test]
    fn the_threshold_opens_and_zero_turns_it_off() {
        let now = Instant::now();
        let policy = BreakerPolicy {
            threshold: 2,
            ..BreakerPolicy::default()
        };
        let mut b = Breakers::default();
        assert_eq!(b.record(1, false, now, &policy), None);
        assert!(matches!(
            b.record(1, false, now, &policy),
            Some(Transition::Opened { failures: 2, .. })
        ));
        assert!(matches!(b.state(1, now), State::Open { .. }));
        assert_eq!(b.not_closed(now), 1);
        let off = BreakerPolicy {
            threshold: 0,
            ..policy
        };
        assert_eq!(b.record(2, false, now, &off), None);
        assert_eq!(b.state(2, now), State::Closed);
    }
}
