//! How one deliverer's request slots (`OUTBOXD_CONCURRENCY`) are shared among
//! the webhooks that want them: max-min fair (water-filling), so a hanging
//! endpoint holds at most its share while others wait.
//!
//! Each webhook's *demand* is the slots it could use now: what it runs, plus
//! what it has queued and may start, up to its limit. While the demands fit
//! in the pool, every webhook runs what its limit allows. Otherwise the
//! *level* is the largest count `l` such that giving every webhook
//! `min(demand, l)` fits; that is its guaranteed share. The slots left over
//! (fewer than the webhooks above the level) are *extras*, one more per
//! webhook at most, and only while taking one leaves room for every webhook
//! still below its share: a request cannot be taken back once sent, so an
//! extra handed to an endpoint that hangs is held until the request timeout.
//! A free slot goes to the waiting webhook with the fewest requests running,
//! ties to the one that has waited longest. While the pool is shared, the
//! level counts one more webhook wanting one slot: that slot stays free for
//! a webhook that holds none yet, so its first request does not wait for a
//! hanging one to time out. Every operation costs a few
//! ordered-map steps (logarithmic in the webhooks holding work); the level
//! costs one step per distinct demand, computed once per change.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The state of the pool's sharing, as the level rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The demands fit: every webhook runs up to its limit.
    Uncontended,
    /// Each webhook is guaranteed `min(demand, level)` slots; `extras` slots
    /// (the pool less the guaranteed ones) may go one more to a webhook.
    Contended { level: usize, extras: usize },
}

/// One webhook's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    running: usize,
    queued: usize,
    /// The most it may run now (its concurrency; one probe while its
    /// breaker is half-open; none while paused or gone).
    limit: usize,
    /// Waiting for something other than a slot (a rate limit's tokens):
    /// its queue counts for nothing until it is unparked.
    parked: bool,
    /// Its key among the waiting webhooks, while it is one.
    key: Option<(usize, u64)>,
}

impl Entry {
    /// The slots it could use now; never less than what it runs.
    fn demand(&self) -> usize {
        let startable = if self.parked { 0 } else { self.queued };
        self.running.max((self.running + startable).min(self.limit))
    }

    fn waits(&self) -> bool {
        !self.parked && self.queued > 0 && self.running < self.limit
    }
}

/// The pool's sharing among webhooks. Ids are the webhooks'.
#[derive(Debug, Clone)]
pub struct Shares {
    concurrency: usize,
    webhooks: HashMap<i64, Entry>,
    /// Webhooks with a delivery they may start, by (requests running, turn).
    waiting: BTreeSet<(usize, u64, i64)>,
    turn: u64,
    /// Webhooks per demand (of at least one), and the demands' sum.
    demands: BTreeMap<usize, usize>,
    demand_sum: usize,
    /// Webhooks per count of requests running (of at least one).
    runs: BTreeMap<usize, usize>,
    total: usize,
    /// The parked webhooks.
    parked: HashSet<i64>,
    /// The level, until the demands change.
    level: Cell<Option<Level>>,
}

impl Shares {
    /// Sharing `concurrency` slots.
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            webhooks: HashMap::new(),
            waiting: BTreeSet::new(),
            turn: 0,
            demands: BTreeMap::new(),
            demand_sum: 0,
            runs: BTreeMap::new(),
            total: 0,
            parked: HashSet::new(),
            level: Cell::new(None),
        }
    }

    /// Requests running, all webhooks together.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Requests the webhook runs.
    pub fn running(&self, webhook_id: i64) -> usize {
        self.webhooks.get(&webhook_id).map_or(0, |e| e.running)
    }

    /// The webhook now has `queued` deliveries waiting for a slot, and may
    /// run at most `limit` requests.
    pub fn set_queued(&mut self, webhook_id: i64, queued: usize, limit: usize) {
        self.update(webhook_id, |e| {
            e.queued = queued;
            e.limit = limit;
        });
    }

    /// The webhook, holding something, may now run at most `limit`
    /// requests (a webhook holding nothing is not kept: `set_queued` gives
    /// its limit when it does).
    pub fn set_limit(&mut self, webhook_id: i64, limit: usize) {
        self.update(webhook_id, |e| e.limit = limit);
    }

    /// A request of the webhook started, taking one of its queued.
    pub fn started(&mut self, webhook_id: i64) {
        self.update(webhook_id, |e| {
            e.running += 1;
            e.queued = e.queued.saturating_sub(1);
        });
    }

    /// One of the webhook's queued deliveries was dropped unsent.
    pub fn dropped(&mut self, webhook_id: i64) {
        self.update(webhook_id, |e| e.queued = e.queued.saturating_sub(1));
    }

    /// The webhooks holding something: running, queued or parked.
    pub fn holding(&self) -> impl Iterator<Item = i64> + '_ {
        self.webhooks.keys().copied()
    }

    /// A request of the webhook finished.
    pub fn finished(&mut self, webhook_id: i64) {
        self.update(webhook_id, |e| e.running = e.running.saturating_sub(1));
    }

    /// The webhook cannot start what it has queued until `unpark_all`.
    pub fn park(&mut self, webhook_id: i64) {
        self.parked.insert(webhook_id);
        self.update(webhook_id, |e| e.parked = true);
    }

    /// Unparks every parked webhook (costs the parked ones).
    pub fn unpark_all(&mut self) {
        for id in std::mem::take(&mut self.parked) {
            self.update(id, |e| e.parked = false);
        }
    }

    /// The webhook whose queued delivery may start now, if any: the pool
    /// has a free slot, and the waiting webhook with the fewest running is
    /// below its share, or may take an extra. The caller starts one (or
    /// parks it, or drops what it dequeued) and asks again.
    pub fn next_to_start(&mut self) -> Option<i64> {
        if self.total >= self.concurrency {
            return None;
        }
        let &(running, _, id) = self.waiting.first()?;
        match self.level() {
            Level::Uncontended => Some(id),
            Level::Contended { level, .. } if running < level => Some(id),
            Level::Contended { level, extras } if running == level => {
                (self.extras_held(level) < extras).then_some(id)
            }
            Level::Contended { .. } => None,
        }
    }

    /// The level rule over the current demands.
    pub fn level(&self) -> Level {
        if let Some(level) = self.level.get() {
            return level;
        }
        // With the newcomer's slot (see the module's doc).
        let level = level_of(&self.demands, self.demand_sum, self.concurrency, 1);
        self.level.set(Some(level));
        level
    }

    /// The slots a webhook allowed `limit` is guaranteed now: its limit
    /// while the pool is not contended, else its share (the level).
    pub fn guaranteed(&self, limit: usize) -> usize {
        match self.level() {
            Level::Uncontended => limit,
            Level::Contended { level, .. } => limit.min(level),
        }
    }

    /// How many requests a webhook allowed `limit` may run now that the
    /// pool is shared: its share and one extra at most.
    pub fn slots_for(&self, limit: usize) -> usize {
        match self.level() {
            Level::Uncontended => limit,
            Level::Contended { level, .. } => limit.min(level + 1),
        }
    }

    /// Slots held above `level`, all webhooks together.
    fn extras_held(&self, level: usize) -> usize {
        self.runs
            .range(level + 1..)
            .map(|(&r, &n)| (r - level) * n)
            .sum()
    }

    /// Applies a change to one webhook's counts and keeps the waiting set
    /// and the tallies in step; forgets a webhook that holds nothing.
    fn update(&mut self, webhook_id: i64, change: impl FnOnce(&mut Entry)) {
        let mut entry = self.webhooks.remove(&webhook_id).unwrap_or_default();
        let before = entry;
        change(&mut entry);
        if let Some((running, turn)) = before.key {
            self.waiting.remove(&(running, turn, webhook_id));
        }
        entry.key = None;
        if entry.waits() {
            // A webhook that stays waiting at the same count keeps its turn.
            let turn = match before.key {
                Some((running, turn)) if running == entry.running => turn,
                _ => {
                    self.turn += 1;
                    self.turn
                }
            };
            entry.key = Some((entry.running, turn));
            self.waiting.insert((entry.running, turn, webhook_id));
        }
        let (old, new) = (before.demand(), entry.demand());
        if old != new {
            tally(&mut self.demands, old, -1);
            tally(&mut self.demands, new, 1);
            self.demand_sum = self.demand_sum + new - old;
            self.level.set(None);
        }
        if before.running != entry.running {
            tally(&mut self.runs, before.running, -1);
            tally(&mut self.runs, entry.running, 1);
            self.total = self.total + entry.running - before.running;
        }
        let holds = entry.running > 0 || entry.queued > 0 || entry.parked;
        // The limit matters only while it holds something: it is set again
        // before it does.
        if holds {
            self.webhooks.insert(webhook_id, entry);
        }
    }
}

/// Adds `by` to the count of `value` (values of zero are not counted).
fn tally(counts: &mut BTreeMap<usize, usize>, value: usize, by: isize) {
    if value == 0 {
        return;
    }
    let n = counts.entry(value).or_default();
    *n = n.checked_add_signed(by).expect("tallies stay in step");
    if *n == 0 {
        counts.remove(&value);
    }
}

/// The level rule for demands counted per value: the largest `l` with
/// `sum(min(d, l)) <= concurrency`, walking the distinct demands upwards
/// (the tests' view of `level_of`, without the newcomer's slot).
#[cfg(test)]
fn water_level(demands: &BTreeMap<usize, usize>, demand_sum: usize, concurrency: usize) -> Level {
    level_of(demands, demand_sum, concurrency, 0)
}

/// The level with `newcomers` more demands of one slot each.
fn level_of(
    demands: &BTreeMap<usize, usize>,
    demand_sum: usize,
    concurrency: usize,
    newcomers: usize,
) -> Level {
    if demand_sum + newcomers <= concurrency {
        return Level::Uncontended;
    }
    let ones = demands.get(&1).copied().unwrap_or(0) + newcomers;
    let counts = || {
        (ones > 0)
            .then_some((1, ones))
            .into_iter()
            .chain(demands.range(2..).map(|(&d, &n)| (d, n)))
    };
    // Between two distinct demands, sum(min(d, l)) is `below + l * above`:
    // `below` the sum of the demands passed, `above` how many are larger.
    let mut below = 0;
    let mut above: usize = counts().map(|(_, n)| n).sum();
    for (d, n) in counts() {
        if below + d * above > concurrency {
            let level = (concurrency - below) / above;
            return Level::Contended {
                level,
                extras: concurrency - below - level * above,
            };
        }
        below += d * n;
        above -= n;
    }
    unreachable!("the demands' sum is above the pool, so some level is")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The level by brute force: try every `l`.
    fn level_by_trial(demands: &[usize], concurrency: usize) -> Level {
        if demands.iter().sum::<usize>() <= concurrency {
            return Level::Uncontended;
        }
        let sum = |l: usize| demands.iter().map(|&d| d.min(l)).sum::<usize>();
        let level = (0..).take_while(|&l| sum(l) <= concurrency).last().unwrap();
        Level::Contended {
            level,
            extras: concurrency - sum(level),
        }
    }

    fn counted(demands: &[usize]) -> BTreeMap<usize, usize> {
        let mut counts = BTreeMap::new();
        for &d in demands {
            tally(&mut counts, d, 1);
        }
        counts
    }

    /// Starts whatever may start; returns how many did.
    fn pump(shares: &mut Shares) -> usize {
        let mut n = 0;
        while let Some(id) = shares.next_to_start() {
            shares.started(id);
            n += 1;
        }
        n
    }

    /// Webhooks `0..limits.len()` with these limits and endless queues.
    fn busy(concurrency: usize, limits: &[usize]) -> Shares {
        let mut shares = Shares::new(concurrency);
        for (id, &limit) in limits.iter().enumerate() {
            shares.set_queued(id as i64, 1_000_000, limit);
        }
        shares
    }

    #[test]
    fn the_level_fills_the_pool_from_the_smallest_demand_up() {
        // (demands, pool, level)
        let table: &[(&[usize], usize, Level)] = &[
            (&[32], 256, Level::Uncontended),
            (&[32; 8], 256, Level::Uncontended),
            (
                &[32; 9],
                256,
                Level::Contended {
                    level: 28,
                    extras: 4,
                },
            ),
            (
                &[32; 200],
                256,
                Level::Contended {
                    level: 1,
                    extras: 56,
                },
            ),
            (
                &[1; 10_000],
                256,
                Level::Contended {
                    level: 0,
                    extras: 256,
                },
            ),
            // A small demand gives what it does not use to the others.
            (
                &[2, 32, 32],
                16,
                Level::Contended {
                    level: 7,
                    extras: 0,
                },
            ),
            (
                &[32],
                16,
                Level::Contended {
                    level: 16,
                    extras: 0,
                },
            ),
        ];
        for &(demands, pool, level) in table {
            assert_eq!(
                water_level(&counted(demands), demands.iter().sum(), pool),
                level,
                "{} demands, pool {pool}",
                demands.len()
            );
        }
    }

    #[test]
    fn a_single_webhook_gets_its_full_concurrency() {
        let mut shares = busy(256, &[32]);
        assert_eq!(pump(&mut shares), 32);
        assert_eq!(shares.level(), Level::Uncontended);
        let mut shares = busy(16, &[32]);
        assert_eq!(pump(&mut shares), 15, "or the pool but a newcomer's slot");
    }

    #[test]
    fn hanging_webhooks_hold_their_share_and_no_more() {
        // Eight webhooks that never finish could take the pool; with a
        // ninth beside them each holds its share (28, three of them one
        // extra; one slot kept for a newcomer), and the ninth, finishing
        // request after request, keeps its own.
        let mut shares = busy(256, &[32; 9]);
        assert_eq!(pump(&mut shares), 255);
        for _ in 0..1000 {
            shares.finished(8);
            pump(&mut shares);
            assert_eq!(shares.total(), 255);
            assert!(shares.running(8) >= 28);
            for id in 0..8 {
                assert!((28..=29).contains(&shares.running(id)), "webhook {id}");
            }
        }
    }

    #[test]
    fn a_free_slot_goes_to_the_webhook_with_fewest_running() {
        let mut shares = busy(5, &[4, 4]);
        shares.set_queued(1, 0, 4);
        assert_eq!(pump(&mut shares), 4, "alone, webhook 0 runs its limit");
        shares.set_queued(1, 10, 4);
        // Webhook 1 takes the last slot; no more is free, and none is
        // taken from 0.
        assert_eq!(shares.next_to_start(), Some(1));
        shares.started(1);
        assert_eq!(shares.next_to_start(), None);
        shares.finished(0);
        assert_eq!(shares.next_to_start(), Some(1));
        shares.started(1);
        // Both at their share (2 each): the freed slot is kept for a
        // newcomer.
        shares.finished(0);
        assert_eq!(shares.next_to_start(), None);
    }

    #[test]
    fn extras_never_take_the_room_of_a_webhook_below_its_share() {
        let mut shares = busy(6, &[4, 4, 4]);
        shares.set_queued(2, 0, 4);
        // Webhooks 0 and 1: level 2, one extra, one slot kept.
        assert_eq!(pump(&mut shares), 5);
        assert_eq!(shares.running(0) + shares.running(1), 5);
        // Webhook 2 comes, below its share: it gets the kept slot at once.
        shares.set_queued(2, 10, 4);
        assert_eq!(shares.next_to_start(), Some(2));
        shares.started(2);
        let (top, other) = if shares.running(0) == 3 {
            (0, 1)
        } else {
            (1, 0)
        };
        // Level 1 with two extras, both held by 0 and 1: a freed slot
        // stays free.
        shares.finished(top);
        assert_eq!(shares.next_to_start(), None);
        // One extra free: the longest waiting at the level takes it.
        shares.finished(other);
        assert_eq!(shares.next_to_start(), Some(2));
    }

    #[test]
    fn parked_and_paused_webhooks_neither_wait_nor_count() {
        let mut shares = busy(9, &[8, 8]);
        shares.park(1);
        assert_eq!(pump(&mut shares), 8);
        assert_eq!(
            shares.running(0),
            8,
            "a parked webhook's queue counts for nothing"
        );
        shares.finished(0);
        shares.unpark_all();
        assert_eq!(shares.next_to_start(), Some(1));
        shares.set_limit(1, 0);
        assert_eq!(shares.next_to_start(), Some(0), "paused: no slot for it");
    }

    #[test]
    fn a_webhook_holding_nothing_is_forgotten() {
        let mut shares = busy(8, &[4]);
        pump(&mut shares);
        shares.set_queued(0, 0, 4);
        for _ in 0..4 {
            shares.finished(0);
        }
        assert_eq!(shares.total(), 0);
        assert!(shares.webhooks.is_empty() && shares.waiting.is_empty());
        assert!(shares.demands.is_empty() && shares.runs.is_empty());
        assert_eq!(shares.level(), Level::Uncontended);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Queue(i64, usize, usize),
        Limit(i64, usize),
        Finish(i64),
        Park(i64),
        Unpark,
        Pump,
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0i64..6;
        prop_oneof![
            (id.clone(), 0usize..40, 0usize..10).prop_map(|(i, n, l)| Op::Queue(i, n, l)),
            (id.clone(), 0usize..10).prop_map(|(i, n)| Op::Limit(i, n)),
            id.clone().prop_map(Op::Finish),
            id.clone().prop_map(Op::Finish),
            id.prop_map(Op::Park),
            Just(Op::Unpark),
            Just(Op::Pump),
        ]
    }

    proptest! {
        #[test]
        fn the_level_is_the_largest_that_fits(
            demands in proptest::collection::vec(1usize..64, 0..50), pool in 1usize..600,
        ) {
            prop_assert_eq!(
                water_level(&counted(&demands), demands.iter().sum(), pool),
                level_by_trial(&demands, pool)
            );
            let with_newcomer: Vec<usize> = demands.iter().copied().chain([1]).collect();
            prop_assert_eq!(
                level_of(&counted(&demands), demands.iter().sum(), pool, 1),
                level_by_trial(&with_newcomer, pool)
            );
        }

        #[test]
        fn never_more_than_the_pool_nor_a_webhook_its_limit(
            pool in 1usize..30, ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut shares = Shares::new(pool);
            for op in ops {
                match op {
                    Op::Queue(id, n, limit) => shares.set_queued(id, n, limit),
                    Op::Limit(id, n) => shares.set_limit(id, n),
                    Op::Finish(id) => shares.finished(id),
                    Op::Park(id) => shares.park(id),
                    Op::Unpark => shares.unpark_all(),
                    Op::Pump => {
                        while let Some(id) = shares.next_to_start() {
                            let e = shares.webhooks[&id];
                            prop_assert!(e.running < e.limit && e.queued > 0 && !e.parked);
                            shares.started(id);
                        }
                        // Work-conserving: a slot stays free only while no
                        // waiting webhook may have it.
                        if shares.total() < pool {
                            if let Level::Contended { level, extras } = shares.level() {
                                for &(running, _, _) in &shares.waiting {
                                    prop_assert!(running >= level);
                                }
                                prop_assert!(shares.waiting.is_empty()
                                    || shares.extras_held(level) >= extras
                                    || shares.waiting.first().unwrap().0 > level);
                            } else {
                                prop_assert!(shares.waiting.is_empty());
                            }
                        }
                    }
                }
                prop_assert!(shares.total() <= pool);
                // The tallies agree with the webhooks' counts.
                let entries = shares.webhooks.values();
                prop_assert_eq!(entries.clone().map(Entry::demand).sum::<usize>(), shares.demand_sum);
                prop_assert_eq!(entries.clone().map(|e| e.running).sum::<usize>(), shares.total());
                prop_assert_eq!(entries.filter(|e| e.waits()).count(), shares.waiting.len());
            }
        }

        #[test]
        fn busy_webhooks_each_keep_their_share_as_requests_finish(
            pool in 1usize..64,
            limits in proptest::collection::vec(1usize..20, 1..12),
            finishing in proptest::collection::vec(0usize..12, 0..300),
        ) {
            let mut shares = busy(pool, &limits);
            pump(&mut shares);
            // All of the pool but a newcomer's slot, or every limit.
            let sum: usize = limits.iter().sum();
            let want = match shares.level() {
                _ if sum < pool => sum,
                Level::Contended { level: 0, .. } => pool,
                _ => pool - 1,
            };
            for i in finishing {
                let id = (i % limits.len()) as i64;
                if shares.running(id) > 0 {
                    shares.finished(id);
                    pump(&mut shares);
                }
                prop_assert_eq!(shares.total(), want);
                let level = match shares.level() {
                    Level::Uncontended => usize::MAX,
                    Level::Contended { level, .. } => level,
                };
                for (id, &limit) in limits.iter().enumerate() {
                    let running = shares.running(id as i64);
                    prop_assert!(running <= limit);
                    // Below its share with work: never refused.
                    prop_assert!(running >= limit.min(level),
                        "webhook {} runs {} of share {}", id, running, limit.min(level));
                    prop_assert!(running <= level.saturating_add(1));
                }
            }
        }
    }
}
