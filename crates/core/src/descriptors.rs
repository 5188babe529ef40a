//! How the process's file descriptors are shared out: deliveries and the
//! database pool get theirs first, and what is left caps the connections the
//! HTTP listeners may hold, so that no number of clients on `/metrics` or the
//! admin port can make a delivery fail with "Too many open files".

/// What the daemon itself needs open, whatever its listeners do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// HTTP requests in flight to webhooks (`OUTBOXD_CONCURRENCY`).
    pub deliveries: u64,
    /// Pooled database connections (`OUTBOXD_DB_POOL_SIZE`).
    pub database: u64,
}

/// Descriptors kept for everything that is neither a delivery nor a pooled
/// connection: the runtime's epoll and wake-up descriptors, standard
/// streams, the LISTEN connection and its reconnect, the fan-out's
/// connection, migrations, DNS.
pub const BASE: u64 = 64;

/// The least connections a listener is given, even when the limit is too
/// low for the needs: a listener that accepts nothing cannot even report
/// that the daemon is short of descriptors.
pub const MIN_PER_LISTENER: u64 = 4;

/// How the descriptors are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Kept for deliveries, the pool and the process itself.
    pub reserved: u64,
    /// Connections each listener may hold at once.
    pub per_listener: u64,
    /// False when the limit is below `reserved` plus the listeners' least
    /// share: the daemon should say so, naming the limit to raise.
    pub enough: bool,
}

impl Needs {
    /// Descriptors reserved: each request in flight holds one socket and
    /// may leave one idle in the client's pool beside the one it opens next.
    pub fn reserved(&self) -> u64 {
        BASE.saturating_add(self.deliveries.saturating_mul(2))
            .saturating_add(self.database)
    }

    /// Shares `limit` (the soft `RLIMIT_NOFILE`) out among listeners whose
    /// connections cost `costs[i]` descriptors each (the admin listener's
    /// test events open a second one), giving each at most `preferred`.
    pub fn plan(&self, limit: u64, costs: &[u64], preferred: u64) -> Plan {
        let reserved = self.reserved();
        let per_unit: u64 = costs.iter().map(|c| (*c).max(1)).sum::<u64>().max(1);
        let spare = limit.saturating_sub(reserved);
        let share = spare / per_unit;
        Plan {
            reserved,
            per_listener: share.clamp(MIN_PER_LISTENER, preferred.max(MIN_PER_LISTENER)),
            enough: share >= MIN_PER_LISTENER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DEFAULTS: Needs = Needs {
        deliveries: 256,
        database: 8,
    };

    #[test]
    fn a_generous_limit_gives_each_listener_its_preferred_cap() {
        let plan = DEFAULTS.plan(1 << 20, &[1, 2], 256);
        assert_eq!(plan.reserved, 64 + 512 + 8);
        assert_eq!(plan.per_listener, 256);
        assert!(plan.enough);
    }

    #[test]
    fn the_usual_1024_leaves_the_listeners_what_deliveries_do_not_need() {
        let plan = DEFAULTS.plan(1024, &[1, 2], 256);
        assert_eq!(plan.per_listener, (1024 - 584) / 3);
        assert!(plan.enough);
    }

    #[test]
    fn a_limit_below_the_needs_is_reported_and_listeners_keep_a_few() {
        let plan = DEFAULTS.plan(256, &[1, 2], 256);
        assert!(!plan.enough);
        assert_eq!(plan.per_listener, MIN_PER_LISTENER);
    }

    proptest! {
        #[test]
        fn listeners_never_take_the_reserve_when_there_is_enough(
            deliveries in 1u64..100_000,
            database in 2u64..1000,
            limit in 0u64..10_000_000,
            admin in any::<bool>(),
            preferred in 1u64..100_000,
        ) {
            let needs = Needs { deliveries, database };
            let costs: &[u64] = if admin { &[1, 2] } else { &[1] };
            let plan = needs.plan(limit, costs, preferred);
            let used: u64 = costs.iter().map(|c| c * plan.per_listener).sum();
            if plan.enough {
                prop_assert!(plan.reserved + used <= limit);
            }
            prop_assert!(plan.per_listener >= MIN_PER_LISTENER);
            prop_assert!(plan.per_listener <= preferred.max(MIN_PER_LISTENER));
        }
    }
}
