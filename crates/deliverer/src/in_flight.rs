//! What the delivery loop holds: requests running and leased deliveries
//! queued per webhook, and the room each webhook has left.
//!
//! Plain bookkeeping owned by the loop (no locks, no I/O), so the rules it
//! applies (the window of `outboxd_core::window`, the lanes of fresh
//! deliveries and retries of `outboxd_core::lanes`, the breaker's limits,
//! the payload budget) are tested here as values.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use outboxd_core::breaker::State;
use outboxd_core::lanes::{Lane, Rooms, Turns};
use outboxd_core::share::Shares;
use outboxd_core::Windows;
use outboxd_db::Claimed;

use crate::breakers::Breakers;
use crate::rate::RateGate;

/// The payload bytes the deliveries held (queued and running) may take
/// before claims and hand-overs stop: with large payloads the windows alone
/// would let memory grow to gigabytes. Counted per delivery, though the
/// deliveries of one event share one copy. A claim brings in at most the
/// rest (and always one delivery); a hand-over at most one batch of small
/// payloads (`outboxd_db::dispatch::HANDOFF_PAYLOAD_BYTES`).
pub(crate) const BYTES_IN_FLIGHT: usize = 32 << 20;

/// A running request's lease: the delivery, its fencing token, its webhook.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub delivery_id: i64,
    pub lease: i64,
    pub webhook_id: i64,
    /// Its payload's bytes, counted in the budget until it finishes.
    pub bytes: usize,
    pub lane: Lane,
}

pub(crate) struct Queued {
    pub delivery: Claimed,
    pub claimed_at: Instant,
}

/// One webhook's queue: a lane of fresh deliveries and one of retries,
/// each oldest first, and whose turn the next free slot is.
#[derive(Default)]
struct Queues {
    fresh: VecDeque<Queued>,
    retries: VecDeque<Queued>,
    turns: Turns,
}

impl Queues {
    fn len(&self) -> usize {
        self.fresh.len() + self.retries.len()
    }

    fn lane(&mut self, lane: Lane) -> &mut VecDeque<Queued> {
        match lane {
            Lane::Fresh => &mut self.fresh,
            Lane::Retry => &mut self.retries,
        }
    }
}

pub(crate) struct InFlight {
    pub windows: Windows,
    /// Requests running, per webhook and in all, and who may start next:
    /// the global slots shared fairly (`outboxd_core::share`).
    shares: Shares,
    /// Retries running, per webhook.
    retries_running: HashMap<i64, usize>,
    /// Leased deliveries waiting for a slot of their webhook, per lane.
    queued: HashMap<i64, Queues>,
    pub queued_total: usize,
    /// Payload bytes of the deliveries held: past `BYTES_IN_FLIGHT` no
    /// more are claimed, whatever room the windows have.
    held_bytes: usize,
    leases: HashMap<tokio::task::Id, Lease>,
    /// Webhooks that just answered 410, and when: claimed no more until the
    /// cache shows them disabled (or a lease length passes, in case the
    /// disable was never written), so no request follows the 410 while the
    /// writer is still disabling the webhook.
    pub gone: HashMap<i64, Instant>,
    /// Circuit breakers of the webhooks with recent failures.
    pub breakers: Breakers,
    /// Webhooks whose room may have changed since the fan-out was told.
    touched: HashSet<i64>,
    /// Tokens of rate-limited webhooks (`crate::rate`).
    pub rate: RateGate,
    /// How long a request of each webhook holding something took, decayed:
    /// a slow one's window holds what it can start within `wait`.
    took: HashMap<i64, Duration>,
    /// How long a delivery may wait queued before its lease could run out
    /// during its request (the lease less the request timeout).
    wait: Duration,
}

impl InFlight {
    pub fn new(windows: Windows, wait: Duration) -> Self {
        Self {
            windows,
            shares: Shares::new(windows.concurrency),
            retries_running: HashMap::new(),
            queued: HashMap::new(),
            queued_total: 0,
            held_bytes: 0,
            leases: HashMap::new(),
            gone: HashMap::new(),
            breakers: Breakers::default(),
            touched: HashSet::new(),
            rate: RateGate::default(),
            took: HashMap::new(),
            wait,
        }
    }

    /// A request of the webhook took `took`: its window follows how long
    /// they take, while it holds something.
    pub fn took(&mut self, webhook_id: i64, took: Duration) {
        if self.held(webhook_id) == 0 {
            self.took.remove(&webhook_id);
            return;
        }
        let mean = self.took.entry(webhook_id).or_insert(took);
        *mean = mean.mul_f64(0.75) + took.mul_f64(0.25);
    }

    /// Notes that the webhook's room (and its limit: breaker, 410) may
    /// have changed.
    pub fn touch(&mut self, webhook_id: i64) {
        self.touched.insert(webhook_id);
        let limit = self.limit(webhook_id, Instant::now());
        self.shares.set_limit(webhook_id, limit);
    }

    /// Requests running, all webhooks together.
    pub fn total(&self) -> usize {
        self.shares.total()
    }

    /// The webhook whose queued delivery may start now, if any: a global
    /// slot is free and the webhook's fair share of them allows it.
    pub fn next_to_start(&mut self) -> Option<i64> {
        self.shares.next_to_start()
    }

    /// The webhook waits for rate tokens: it asks for no slot until
    /// `unpark_all`.
    pub fn park(&mut self, webhook_id: i64) {
        self.shares.park(webhook_id);
    }

    /// Tokens arrived: every parked webhook may ask for a slot again.
    pub fn unpark_all(&mut self) {
        self.shares.unpark_all();
    }

    /// Tells the shares what the webhook has queued and may run now.
    fn sync(&mut self, webhook_id: i64) {
        let limit = self.limit(webhook_id, Instant::now());
        let queued = self.queued_of(webhook_id);
        self.shares.set_queued(webhook_id, queued, limit);
    }

    /// The webhooks touched since the last call.
    pub fn take_touched(&mut self) -> HashSet<i64> {
        std::mem::take(&mut self.touched)
    }

    /// Deliveries held, running and queued, all webhooks together.
    pub fn held_total(&self) -> usize {
        self.total() + self.queued_total
    }

    pub fn running(&self, webhook_id: i64) -> usize {
        self.shares.running(webhook_id)
    }

    pub fn enqueue(&mut self, delivery: Claimed, claimed_at: Instant) {
        self.queued_total += 1;
        self.held_bytes += delivery.payload.len();
        self.touched.insert(delivery.webhook_id);
        let lane = Lane::of_attempt(delivery.attempt);
        let webhook_id = delivery.webhook_id;
        self.queued
            .entry(webhook_id)
            .or_default()
            .lane(lane)
            .push_back(Queued {
                delivery,
                claimed_at,
            });
        self.sync(webhook_id);
    }

    /// The webhook's next queued delivery, if any: the oldest of the lane
    /// whose turn it is. It is then `started` or `unsent`.
    pub fn dequeue(&mut self, webhook_id: i64) -> Option<Queued> {
        let queue = self.queued.get_mut(&webhook_id)?;
        let lane = queue
            .turns
            .next(!queue.fresh.is_empty(), !queue.retries.is_empty());
        let next = lane.and_then(|lane| queue.lane(lane).pop_front());
        if queue.len() == 0 {
            self.queued.remove(&webhook_id);
        }
        let Some(next) = next else {
            self.sync(webhook_id);
            return None;
        };
        self.touched.insert(webhook_id);
        self.queued_total -= 1;
        Some(next)
    }

    /// A dequeued delivery that will not be started: its bytes leave the
    /// budget.
    pub fn unsent(&mut self, delivery: &Claimed) {
        self.held_bytes -= delivery.payload.len();
        self.shares.dropped(delivery.webhook_id);
    }

    /// Removes the webhook's queue and returns what it held.
    pub fn take_queue(&mut self, webhook_id: i64) -> Vec<Claimed> {
        let queue = self.queued.remove(&webhook_id).unwrap_or_default();
        self.touched.insert(webhook_id);
        self.queued_total -= queue.len();
        self.sync(webhook_id);
        queue
            .fresh
            .into_iter()
            .chain(queue.retries)
            .map(|q| {
                self.held_bytes -= q.delivery.payload.len();
                q.delivery
            })
            .collect()
    }

    /// How many deliveries the webhook has queued.
    pub fn queued_of(&self, webhook_id: i64) -> usize {
        self.queued.get(&webhook_id).map_or(0, Queues::len)
    }

    /// Books a started request.
    pub fn started(&mut self, task: tokio::task::Id, lease: Lease) {
        self.touched.insert(lease.webhook_id);
        self.shares.started(lease.webhook_id);
        if lease.lane == Lane::Retry {
            *self.retries_running.entry(lease.webhook_id).or_default() += 1;
        }
        self.leases.insert(task, lease);
    }

    /// Books a finished request; returns its lease if it was known.
    pub fn finished(&mut self, task: tokio::task::Id) -> Option<Lease> {
        let lease = self.leases.remove(&task)?;
        self.touched.insert(lease.webhook_id);
        self.held_bytes -= lease.bytes;
        self.shares.finished(lease.webhook_id);
        if lease.lane == Lane::Retry {
            if let Some(n) = self.retries_running.get_mut(&lease.webhook_id) {
                *n -= 1;
                if *n == 0 {
                    self.retries_running.remove(&lease.webhook_id);
                }
            }
        }
        Some(lease)
    }

    /// Every lease held, running or queued, to hand back at shutdown.
    pub fn all_leases(&self) -> Vec<(i64, i64)> {
        self.leases
            .values()
            .map(|l| (l.delivery_id, l.lease))
            .chain(
                self.queued
                    .values()
                    .flat_map(|q| q.fresh.iter().chain(&q.retries))
                    .map(|q| (q.delivery.delivery_id, q.delivery.lease)),
            )
            .collect()
    }

    pub fn held(&self, webhook_id: i64) -> usize {
        self.running(webhook_id) + self.queued_of(webhook_id)
    }

    /// What the webhook holds, running and queued: (fresh, retries).
    pub fn held_by_lane(&self, webhook_id: i64) -> (usize, usize) {
        let retries = self.retries_running.get(&webhook_id).copied().unwrap_or(0)
            + self.queued.get(&webhook_id).map_or(0, |q| q.retries.len());
        (self.held(webhook_id) - retries, retries)
    }

    /// How many retries the webhook may hold, running and queued (fresh
    /// deliveries half as many more: `outboxd_core::lanes`).
    pub fn window(&self, webhook_id: i64, now: Instant) -> usize {
        let limit = self.limit(webhook_id, now);
        let window = self.windows.of(limit);
        match self.took.get(&webhook_id) {
            Some(&took) => {
                let slots = self.shares.slots_for(limit);
                self.windows.within_wait(window, slots, took, self.wait)
            }
            None => window,
        }
    }

    /// The window of the webhook's guaranteed share of the global slots
    /// (at least one slot, unless it may run none): what a claim fills it
    /// to, and what of its holding counts against the deliverer's capacity,
    /// so webhooks holding leases they cannot start soon (endpoints that
    /// hang) do not stop claims for the others.
    pub fn fair_window(&self, webhook_id: i64, now: Instant) -> usize {
        let limit = self.limit(webhook_id, now);
        let slots = if limit == 0 {
            0
        } else {
            self.shares.guaranteed(limit).max(1)
        };
        self.window(webhook_id, now).min(self.windows.of(slots))
    }

    /// Deliveries held, each webhook's counted up to its fair window.
    /// Walks the webhooks holding something.
    pub fn held_within_shares(&self, now: Instant) -> usize {
        self.shares
            .holding()
            .map(|id| self.held(id).min(self.fair_window(id, now)))
            .sum()
    }

    /// How many more deliveries the webhook may hold, per lane (none while
    /// the queued payloads fill their budget).
    pub fn rooms(&self, webhook_id: i64, now: Instant) -> Rooms {
        if self.over_budget() {
            return Rooms::default();
        }
        let (fresh, retries) = self.held_by_lane(webhook_id);
        self.windows
            .rooms(self.window(webhook_id, now), fresh, retries)
    }

    /// How many more fresh deliveries the webhook may hold: the room the
    /// fan-out may take.
    pub fn room(&self, webhook_id: i64, now: Instant) -> usize {
        self.rooms(webhook_id, now).fresh
    }

    pub fn over_budget(&self) -> bool {
        self.held_bytes >= BYTES_IN_FLIGHT
    }

    /// Payload bytes a claim may still bring in.
    pub fn byte_room(&self) -> usize {
        BYTES_IN_FLIGHT.saturating_sub(self.held_bytes)
    }

    /// Whether the webhook's breaker is open: its queue goes back unsent.
    pub fn paused(&self, webhook_id: i64, now: Instant) -> bool {
        matches!(self.breakers.state(webhook_id, now), State::Open { .. })
    }

    /// How many requests the webhook may have running now: none while it is
    /// paused or just answered 410, one probe when its pause is over.
    pub fn limit(&self, webhook_id: i64, now: Instant) -> usize {
        if self.gone.contains_key(&webhook_id) {
            return 0;
        }
        match self.breakers.state(webhook_id, now) {
            State::Closed => self.windows.webhook_concurrency,
            State::Open { .. } => 0,
            State::HalfOpen => 1,
        }
    }

    /// The webhooks whose room differs from a full window: holding
    /// something, paused or gone.
    pub fn not_at_default(&self) -> impl Iterator<Item = i64> + '_ {
        self.shares
            .holding()
            .chain(self.queued.keys().copied())
            .chain(self.breakers.webhooks().copied())
            .chain(self.gone.keys().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use outboxd_core::lanes::fresh_window;
    use outboxd_core::window::FACTOR;

    fn delivery(id: i64, webhook_id: i64, payload_bytes: usize) -> Claimed {
        attempt(id, webhook_id, payload_bytes, 1)
    }

    fn attempt(id: i64, webhook_id: i64, payload_bytes: usize, attempt: i32) -> Claimed {
        Claimed {
            delivery_id: id,
            lease: 1,
            attempt,
            event_id: id,
            webhook_id,
            event_type: "bench.event".into(),
            payload: "x".repeat(payload_bytes).into(),
            created_at: Utc::now(),
            ordering_key: None,
        }
    }

    #[test]
    fn the_window_is_a_multiple_of_the_webhook_concurrency() {
        let now = Instant::now();
        let mut in_flight = InFlight::new(Windows::new(256, 4), Duration::from_secs(50));
        let fresh = fresh_window(FACTOR * 4);
        assert_eq!(in_flight.window(7, now), FACTOR * 4);
        assert_eq!(in_flight.room(7, now), fresh);
        in_flight.enqueue(delivery(1, 7, 10), now);
        assert_eq!(in_flight.room(7, now), fresh - 1);
        assert_eq!(in_flight.room(8, now), fresh);
    }

    #[test]
    fn fresh_deliveries_pass_queued_retries() {
        let now = Instant::now();
        let mut in_flight = InFlight::new(Windows::new(256, 4), Duration::from_secs(50));
        for id in 0..FACTOR as i64 * 4 {
            in_flight.enqueue(attempt(id, 7, 10, 2), now);
        }
        let rooms = in_flight.rooms(7, now);
        assert_eq!(rooms.retries, 0, "retries fill their window");
        assert_eq!(rooms.fresh, fresh_window(FACTOR * 4) - FACTOR * 4);
        in_flight.enqueue(delivery(100, 7, 10), now);
        in_flight.enqueue(delivery(101, 7, 10), now);
        assert_eq!(in_flight.held_by_lane(7), (2, FACTOR * 4));
        let order: Vec<i64> = (0..6)
            .map(|_| in_flight.dequeue(7).unwrap().delivery.delivery_id)
            .collect();
        assert_eq!(
            order,
            [100, 101, 0, 1, 2, 3],
            "fresh first, then retries in order"
        );
        assert_eq!(in_flight.held_by_lane(7), (0, FACTOR * 4 - 4));
    }

    #[test]
    fn large_payloads_stop_claims_before_the_windows_are_full() {
        let now = Instant::now();
        let mut in_flight = InFlight::new(Windows::new(256, 4), Duration::from_secs(50));
        let mib = 1 << 20;
        for id in 0..(BYTES_IN_FLIGHT / mib) as i64 {
            assert!(in_flight.room(7, now) > 0);
            in_flight.enqueue(delivery(id, 7 + id % 2, mib), now);
        }
        assert_eq!(in_flight.room(7, now), 0, "budget spent");
        assert_eq!(in_flight.room(9, now), 0, "for every webhook");
        assert_eq!(in_flight.byte_room(), 0);
        // A running request holds its bytes until it finishes; one
        // dequeued and dropped gives them back at once.
        let next = in_flight.dequeue(7).unwrap();
        assert_eq!(
            in_flight.byte_room(),
            0,
            "dequeued, not yet started or dropped"
        );
        in_flight.unsent(&next.delivery);
        assert_eq!(in_flight.byte_room(), mib);
        let next = in_flight.dequeue(8).unwrap();
        let task = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(async {}).id() });
        in_flight.started(
            task,
            Lease {
                delivery_id: next.delivery.delivery_id,
                lease: 1,
                webhook_id: 8,
                bytes: mib,
                lane: Lane::Fresh,
            },
        );
        assert_eq!(in_flight.byte_room(), mib);
        in_flight.finished(task);
        assert_eq!(in_flight.byte_room(), 2 * mib);
    }

    #[test]
    fn a_webhook_that_answered_410_has_no_room() {
        let now = Instant::now();
        let mut in_flight = InFlight::new(Windows::new(256, 4), Duration::from_secs(50));
        in_flight.gone.insert(3, now);
        assert_eq!(in_flight.limit(3, now), 0);
        assert_eq!(in_flight.room(3, now), 0);
        assert_eq!(in_flight.not_at_default().collect::<Vec<_>>(), [3]);
    }
}
