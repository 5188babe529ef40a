//! The connections a listener holds: which are in a request and which idle
//! (or still sending a header), so that a full listener can close the one
//! idle longest to make room for a newcomer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub(crate) struct Table {
    epoch: Instant,
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

pub(crate) struct Slot {
    id: u64,
    epoch: Instant,
    /// Requests of this connection between head and end of response.
    busy: AtomicUsize,
    /// When it last became idle, in ms since `epoch`.
    idle_since: AtomicU64,
    evict: CancellationToken,
}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Tells the connection idle longest to close; false when every
    /// connection is in a request.
    pub(crate) fn evict_idlest(&self) -> bool {
        let mut slots = self.slots.lock().expect("connection table lock");
        let victim = slots
            .values()
            .filter(|s| s.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|s| s.idle_since.load(Ordering::Acquire))
            .map(|s| s.id);
        match victim.and_then(|id| slots.remove(&id)) {
            Some(evicted) => {
                evicted.evict.cancel();
                true
            }
            None => false,
        }
    }

    /// A slot for a new connection.
    pub(crate) fn join(&self) -> Arc<Slot> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            id,
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            evict: CancellationToken::new(),
        });
        slot.touch();
        self.slots
            .lock()
            .expect("connection table lock")
            .insert(id, slot.clone());
        slot
    }

    /// Frees the slot when the connection's task ends, however it ends.
    pub(crate) fn leave_on_drop(self: &Arc<Self>, id: u64) -> Leave {
        Leave {
            table: self.clone(),
            id,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().expect("connection table lock").len()
    }
}

pub(crate) struct Leave {
    table: Arc<Table>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.table.slots.lock() {
            slots.remove(&self.id);
        }
    }
}

impl Slot {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn touch(&self) {
        let ms = self
            .epoch
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.idle_since.store(ms, Ordering::Release);
    }
}

pub(crate) struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_is_evicted_first() {
        let table = Arc::new(Table::new());
        let first = table.join();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = table.join();
        assert!(table.evict_idlest());
        assert!(first.evict.is_cancelled());
        assert!(!second.evict.is_cancelled());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn busy_connections_are_not_evicted() {
        let table = Arc::new(Table::new());
        let a = table.join();
        let b = table.join();
        let (busy_a, busy_b) = (a.busy(), b.busy());
        assert!(!table.evict_idlest());
        drop(busy_b);
        assert!(table.evict_idlest());
        assert!(b.evict.is_cancelled());
        assert!(!a.evict.is_cancelled());
        drop(busy_a);
    }

    #[test]
    fn a_finished_connection_leaves_the_table() {
        let table = Arc::new(Table::new());
        let a = table.join();
        drop(table.leave_on_drop(a.id()));
        assert_eq!(table.len(), 0);
    }
}
