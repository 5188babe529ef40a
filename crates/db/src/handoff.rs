//! Deliveries claimed at fan-out, handed straight to the deliverer.
//!
//! A new delivery would otherwise be inserted `pending` and, a round trip
//! later, claimed by an update of the same row. The fan-out instead inserts
//! it already `in_flight` under a lease, when the deliverer has room for its
//! webhook, and passes it over a channel: one write and one statement fewer
//! per delivery. The deliverer publishes its room per webhook here; the
//! fan-out takes from it, and what it took counts as in transit until it
//! arrives, so the two never hand out the same room twice. The fan-out also
//! paces itself by it: it claims about as many events as there is room
//! for, so that few deliveries go in `pending` only to be claimed by a
//! second write a moment later. The result writer's promotions of ordered
//! keys (`crate::results`) take room and hand over the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_core::Windows;
use tokio::sync::{mpsc, Notify};

use crate::Claimed;

/// The deliverer's room per webhook, shared with the fan-out.
#[derive(Debug)]
pub struct Room {
    windows: Windows,
    inner: Mutex<RoomInner>,
    /// Signalled by every `publish`, for a fan-out waiting for room.
    published: Notify,
}

#[derive(Debug, Default)]
struct RoomInner {
    /// Room of a webhook not listed in `room`.
    default: usize,
    /// Webhooks with deliveries held, paused or gone: their room.
    room: HashMap<i64, usize>,
    /// Taken by the fan-out, not yet arrived.
    in_transit: HashMap<i64, usize>,
    /// No room for any webhook (the deliverer holds all it may).
    none: bool,
}

impl RoomInner {
    /// What the fan-out may still take for the webhook.
    fn available(&self, webhook_id: i64) -> usize {
        if self.none {
            return 0;
        }
        let room = self.room.get(&webhook_id).copied().unwrap_or(self.default);
        room.saturating_sub(self.in_transit.get(&webhook_id).copied().unwrap_or(0))
    }
}

impl Room {
    pub fn new(windows: Windows) -> Arc<Self> {
        Arc::new(Self {
            windows,
            inner: Mutex::new(RoomInner {
                // A webhook holding nothing: its whole room for fresh
                // deliveries (`outboxd_core::lanes`).
                default: windows.full_rooms().fresh,
                ..RoomInner::default()
            }),
            published: Notify::new(),
        })
    }

    /// The deliverer's window rule.
    pub fn windows(&self) -> Windows {
        self.windows
    }

    /// The deliverer's view of the webhooks whose room changed (a webhook
    /// back at the default room is no longer listed); lifts `publish_none`.
    /// Costs the webhooks given, not all of them.
    pub fn publish(&self, changed: impl IntoIterator<Item = (i64, usize)>) {
        let mut inner = self.lock();
        let mut any = std::mem::take(&mut inner.none);
        let default = inner.default;
        for (id, room) in changed {
            any = true;
            if room == default {
                inner.room.remove(&id);
            } else {
                inner.room.insert(id, room);
            }
        }
        drop(inner);
        if any {
            self.published.notify_one();
        }
    }

    /// No room for any webhook until the next `publish`.
    pub fn publish_none(&self) {
        self.lock().none = true;
    }

    /// Waits for the deliverer's next view of its room.
    pub async fn published(&self) {
        self.published.notified().await;
    }

    /// The most room any of `webhooks` webhooks has left to take; `None`
    /// when there are none. Looks only at the webhooks listed (holding
    /// something, paused, or in transit): any other has the default room.
    pub fn most_available(&self, webhooks: usize) -> Option<usize> {
        if webhooks == 0 {
            return None;
        }
        let inner = self.lock();
        let listed: std::collections::HashSet<i64> = inner
            .room
            .keys()
            .chain(inner.in_transit.keys())
            .copied()
            .collect();
        let unlisted = (listed.len() < webhooks).then(|| inner.available(i64::MIN));
        listed
            .iter()
            .map(|&id| inner.available(id))
            .chain(unlisted)
            .max()
    }

    /// Takes up to `want` of the webhook's room; returns how much was taken.
    pub fn take(&self, webhook_id: i64, want: usize) -> usize {
        let mut inner = self.lock();
        let taken = want.min(inner.available(webhook_id));
        if taken > 0 {
            *inner.in_transit.entry(webhook_id).or_default() += taken;
        }
        taken
    }

    /// Takes room for new deliveries, given as their webhooks, oldest
    /// first: returns the room taken per webhook and, per delivery, whether
    /// it got some (a webhook's oldest deliveries get its room).
    pub fn take_for(&self, webhooks: &[i64]) -> (HashMap<i64, usize>, Vec<bool>) {
        let mut wanted: HashMap<i64, usize> = HashMap::new();
        for &w in webhooks {
            *wanted.entry(w).or_default() += 1;
        }
        let taken: HashMap<i64, usize> = wanted
            .into_iter()
            .map(|(w, n)| (w, self.take(w, n)))
            .filter(|&(_, k)| k > 0)
            .collect();
        let mut left = taken.clone();
        let claimed = webhooks
            .iter()
            .map(|w| match left.get_mut(w) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            })
            .collect();
        (taken, claimed)
    }

    /// What was taken has arrived (or was given up: `used` of `taken`):
    /// no longer in transit, and the room it fills is gone.
    pub fn arrived(&self, webhook_id: i64, taken: usize, used: usize) {
        let mut inner = self.lock();
        if let Some(n) = inner.in_transit.get_mut(&webhook_id) {
            *n = n.saturating_sub(taken);
            if *n == 0 {
                inner.in_transit.remove(&webhook_id);
            }
        }
        let default = inner.default;
        let room = inner.room.entry(webhook_id).or_insert(default);
        *room = room.saturating_sub(used);
    }

    /// Taken and not yet arrived, per webhook, for the deliverer's own
    /// claims.
    pub fn in_transit(&self) -> HashMap<i64, usize> {
        self.lock().in_transit.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomInner> {
        // Nothing here can panic while holding the lock; a poisoned one
        // still holds consistent numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One fan-out's hand-over: the deliveries claimed, and per webhook how
/// much room was taken for them (more than claimed when some were not
/// inserted after all).
#[derive(Debug)]
pub struct Handed {
    pub claimed: Vec<Claimed>,
    pub taken: HashMap<i64, usize>,
    /// Before the leases were written: the lease runs from about then.
    pub at: Instant,
}

/// The fan-out's end of the hand-over.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub room: Arc<Room>,
    pub to_deliverer: mpsc::UnboundedSender<Handed>,
    /// The lease of a delivery claimed at fan-out.
    pub lease: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A webhook's whole room for fresh deliveries here: 24 (one request
    /// slot's window of 16, and its fresh reserve).
    const W: usize = outboxd_core::lanes::fresh_window(outboxd_core::window::FACTOR);

    fn room() -> Arc<Room> {
        Room::new(Windows::new(8, 1))
    }

    #[test]
    fn room_is_taken_once_until_it_arrives() {
        let room = room();
        assert_eq!(room.take(1, 20), 20);
        assert_eq!(room.take(1, 20), 4, "only what is not in transit");
        assert_eq!(room.take(1, 20), 0);
        assert_eq!(room.in_transit()[&1], W);
        // The deliverer's next view may not count them yet; in transit
        // still does.
        room.publish(HashMap::from([(1, W)]));
        assert_eq!(room.take(1, 1), 0);
        // Twenty of 24 arrive; the room they filled is gone.
        room.arrived(1, W, 20);
        assert!(room.in_transit().is_empty());
        assert_eq!(room.take(1, 20), 4);
        // Other webhooks have the default room.
        assert_eq!(room.take(2, 40), W);
    }

    #[test]
    fn the_most_available_room_counts_what_is_in_transit() {
        let room = room();
        assert_eq!(room.most_available(0), None);
        room.publish(HashMap::from([(1, 2), (2, 6)]));
        assert_eq!(room.most_available(2), Some(6));
        assert_eq!(room.take(2, 5), 5);
        assert_eq!(room.most_available(2), Some(2));
        assert_eq!(room.most_available(3), Some(W), "a third holds nothing");
        room.publish_none();
        assert_eq!(room.most_available(3), Some(0));
        assert_eq!(room.take(3, 1), 0);
        room.publish([]);
        assert_eq!(room.take(3, 1), 1);
    }

    #[test]
    fn new_deliveries_get_the_room_oldest_first() {
        let room = room();
        room.publish(HashMap::from([(9, 0), (1, 2), (2, 2)]));
        let (taken, claimed) = room.take_for(&[1, 9, 1, 1, 2]);
        assert_eq!(taken, HashMap::from([(1, 2), (2, 1)]));
        assert_eq!(claimed, [true, false, true, false, true]);
        assert_eq!(room.in_transit()[&1], 2);
    }

    #[test]
    fn a_paused_webhook_has_no_room() {
        let room = room();
        room.publish(HashMap::from([(7, 0)]));
        assert_eq!(room.take(7, 10), 0);
        assert_eq!(room.take(8, 10), 10);
    }
}
