//! Fan-out: new events become one delivery per matching webhook.
//!
//! The daemon reads `outbox.events` as a stream and never writes it:
//! `outbox.next_events` (migrations/V8) returns the next events in the order their
//! transactions made them visible and moves the progress row past them, under
//! that row's lock, so replicas take turns and each event is fanned out once.
//! One transaction per batch, in two round trips: take the next events
//! (`BEGIN` with them), match them against the webhook cache, insert the
//! deliveries set-wise (`COMMIT` with the insert). A crash before commit
//! leaves the progress where it was, for the next batch. Between
//! rounds it sleeps on LISTEN while events are rare and polls while they
//! come fast, telling the application's trigger (`outbox.wakeup`) whether to
//! notify; `outboxd_core::wakeup` decides which. A batch is about as large
//! as the deliverer has room for, so that its deliveries go in claimed (see
//! `handoff`); when there is none for a poll interval, everything waiting
//! is fanned out `pending` anyway. A delivery of an ordered webhook whose
//! key has a delivery in the way goes in `held` (see `INSERT_ORDERED`);
//! a webhook whose breaker holds it paused gets one deferred row for the
//! round instead of its deliveries (see `INSERT_DELIVERIES`, `deferred`).
//! While a pass is long, `next_events` also returns tenants' newer events
//! that nothing of their tenant precedes (its express lane, V26), so one
//! tenant's backlog does not hold back the others'; between the pass's
//! rounds the lane also runs on its own (V27), so such an event waits for
//! the round under way and not for the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_core::express;
use outboxd_core::wakeup::{Activity, Wait, WakePolicy};
use outboxd_metrics as names;

use tokio::sync::Notify;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use crate::{Claimed, Error, Handed, Handoff, Pool, WebhookCache};

/// In stream order: the room handed out goes to the first events'
/// deliveries. A payload larger than `$2` bytes stays in the database (its
/// length is known without reading it): its deliveries go in `pending`
/// and the deliverer claims them within its byte budget, so a batch of
/// large events never has to fit in memory at once. `$3` and `$4` are the
/// express lane's share and whether keyed events may take it (V26): while
/// a pass is long, tenants with nothing left in it get their newer events
/// fanned out beside it.
const NEXT_EVENTS: &str = "
SELECT id, event_type, target_webhook_id,
       CASE WHEN octet_length(payload) <= $2 THEN payload END, created_at, tenant,
       ordering_key
  FROM outbox.next_events($1, $3, $4)";

/// The webhooks' version (V28), read after `NEXT_EVENTS`.
const WEBHOOKS_VERSION: &str = "SELECT version FROM outbox.webhooks_version";

/// The largest payload handed over at fan-out: a batch holds at most
/// `batch_size` of them.
pub const HANDOFF_PAYLOAD_BYTES: i32 = 64 << 10;

/// A delivery the deliverer has room for goes in already claimed: attempt
/// 1 under lease 1, as a claim would have made it; the others wait
/// `pending`. A webhook whose breaker holds it paused (`$5`: the batch's
/// webhooks, each once) gets one deferred row for the batch instead of a
/// delivery per event (V29). Its health row is locked (FOR SHARE) so that
/// a recovery's update waits for this commit and the expansion after it
/// sees the row; a recovery committed first is seen here, and its events
/// go in as deliveries.
const INSERT_DELIVERIES: &str = "
WITH paused AS (
    SELECT h.webhook_id FROM outbox.webhook_health h
     WHERE h.webhook_id = ANY ($5::int8[]) AND h.paused_until > now()
       FOR SHARE),
t AS (
    SELECT u.event_id, u.webhook_id, u.claimed, p.webhook_id IS NOT NULL AS deferred
      FROM unnest($1::int8[], $2::int8[], $3::bool[]) AS u(event_id, webhook_id, claimed)
      LEFT JOIN paused p ON p.webhook_id = u.webhook_id),
deferred AS (
    INSERT INTO outbox.deferred_deliveries (webhook_id, first_event_id, last_event_id, event_ids)
    SELECT t.webhook_id, min(t.event_id), max(t.event_id), array_agg(t.event_id ORDER BY t.event_id)
      FROM t WHERE t.deferred
     GROUP BY t.webhook_id)
INSERT INTO outbox.deliveries (event_id, webhook_id, state, attempts, lease, locked_until)
SELECT t.event_id, t.webhook_id,
       CASE WHEN t.claimed THEN 'in_flight' ELSE 'pending' END,
       t.claimed::int4, t.claimed::int4::int8,
       CASE WHEN t.claimed THEN now() + $4 * interval '1 millisecond' END
  FROM t
 WHERE NOT t.deferred
ON CONFLICT (event_id, webhook_id) DO NOTHING
RETURNING id, event_id, webhook_id, state = 'in_flight', ordering_key";

/// First of the two statements of an ordered fan-out: the locks of the
/// batch's (webhook, key) pairs (`outbox.lock_keys`, V21). The result
/// writer, replays and skips take the same locks before they change a
/// key's head, so one of the two goes first: either the writer committed
/// before this lock was granted (the insert's fresh snapshot sees the head
/// finished and whatever it promoted), or it waits until this transaction
/// has committed its held rows, and its promotion, a later statement, sees
/// them. Locking the head rows instead would miss a head promoted after
/// the lock and finished before this commit: the key would be stuck.
const LOCK_KEYS: &str = "SELECT outbox.lock_keys($1::int8[], $2::text[])";

/// Second statement, after `LOCK_KEYS` (READ COMMITTED: a fresh snapshot):
/// `$4` is the ordering key of each delivery to an ordered webhook (null
/// otherwise), `$6` whether an earlier event of its (webhook, key) is in
/// this batch (by event id, as the key's order goes). A keyed one goes
/// `held` when it has such an earlier event, or its key has a head, a held
/// one or (under halt) a failure not released; otherwise as
/// `INSERT_DELIVERIES` (claimed when it got room). The conditions on `b`
/// repeat the predicate of `deliveries_by_key` so that the planner can
/// prove the index applies (it did not from the narrower form alone, and
/// scanned every delivery of the webhook); the webhook's policy is read
/// only for a failure found. Earlier batches' deliveries are committed:
/// fan-outs take turns on the stream's progress row.
const INSERT_ORDERED: &str = "
INSERT INTO outbox.deliveries (event_id, webhook_id, state, attempts, lease, locked_until,
                               ordering_key)
SELECT t.event_id, t.webhook_id,
       CASE WHEN t.held THEN 'held' WHEN t.claimed THEN 'in_flight' ELSE 'pending' END,
       t.go::int4, t.go::int4::int8,
       CASE WHEN t.go THEN now() + $5 * interval '1 millisecond' END,
       t.ordering_key
  FROM (SELECT u.*, u.claimed AND NOT u.held AS go
          FROM (SELECT u.event_id, u.webhook_id, u.claimed, u.ordering_key,
                       u.ordering_key IS NOT NULL AND (
                           u.later
                        OR EXISTS (SELECT 1 FROM outbox.deliveries b
                                    WHERE b.webhook_id = u.webhook_id
                                      AND b.ordering_key = u.ordering_key
                                      AND b.state IN ('pending', 'in_flight', 'held', 'failed')
                                      AND (b.state <> 'failed'
                                           OR (b.released_at IS NULL
                                               AND EXISTS (SELECT 1 FROM outbox.webhooks w
                                                            WHERE w.id = u.webhook_id
                                                              AND w.ordering_policy = 'halt'))))) AS held
                  FROM unnest($1::int8[], $2::int8[], $3::bool[], $4::text[], $6::bool[])
                       AS u(event_id, webhook_id, claimed, ordering_key, later)
                -- Not pulled up: `held` is read three times, its probe run once.
                OFFSET 0) u) t
ON CONFLICT (event_id, webhook_id) DO NOTHING
RETURNING id, event_id, webhook_id, state = 'in_flight', ordering_key";

/// Asks the host's insert trigger to notify (true) or to stay quiet because
/// a daemon is busy polling anyway (false). Written only on a change.
const SET_WAKEUP: &str = "UPDATE outbox.wakeup SET requested = $1 WHERE requested <> $1";

/// The fan-out task.
pub struct Dispatcher {
    pub pool: Pool,
    pub cache: Arc<WebhookCache>,
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// Notified by the listener when events may be waiting.
    pub wake: Arc<Notify>,
    /// Notified here when new deliveries wait `pending`.
    pub deliveries_ready: Arc<Notify>,
    /// Where deliveries claimed at fan-out go; without it every new
    /// delivery waits `pending` for a claim.
    pub handoff: Option<Handoff>,
}

/// How large the next batch may be.
enum Pace {
    Room(i64),
    /// No room for a poll interval: fan out what waits, claimed or not.
    NoneFor,
    Shutdown,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub events: usize,
    /// Deliveries inserted, claimed ones included.
    pub deliveries: u64,
    /// Of those, handed to the deliverer already claimed.
    pub handed: u64,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let policy = WakePolicy::default();
        let mut activity = Activity::default();
        let origin = Instant::now();
        let mut notify_requested = false;
        let mut failures = 0u32;
        // Fanning out everything waiting, room or not, until a batch comes
        // back short: the deliverer had no room for a whole poll interval.
        let mut catching_up = false;
        // The last round's events and time while the pass is long (its
        // batch came back full). While the express lane is in use (it took
        // events within `express::IN_USE`), the next round is sized to take
        // about `express::ROUND`: a tenant's event committed meanwhile
        // waits for it.
        let mut long_pass: Option<(usize, Duration)> = None;
        let mut lane_used_at: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let limit = match &self.handoff {
                Some(handoff) if !catching_up => match self.pace(handoff, &shutdown).await {
                    Pace::Room(n) => n,
                    Pace::NoneFor => {
                        catching_up = true;
                        self.batch_size
                    }
                    Pace::Shutdown => return,
                },
                _ => self.batch_size,
            };
            if long_pass.is_some() && self.cache.has_tenants() {
                // The lane first, in a transaction of its own: a tenant's
                // event committed during the last round waits for that
                // round only, not for the next one too.
                match self.dispatch(0, limit).await {
                    Ok(r) if r.events > 0 => {
                        lane_used_at = Some(Instant::now());
                        self.announce(&r);
                    }
                    Ok(_) => {}
                    // The pass's round below meets the same fault and
                    // backs off.
                    Err(e) => tracing::debug!(error = %e, "the express lane's round failed"),
                }
            }
            let lane_in_use = lane_used_at.is_some_and(|at| at.elapsed() < express::IN_USE);
            let limit = match long_pass {
                Some(pace) if lane_in_use => {
                    express::round_events(limit, Some(pace), express::ROUND)
                }
                _ => limit,
            };
            let started = Instant::now();
            let round = match self.dispatch(limit, limit).await {
                Ok(r) => {
                    failures = 0;
                    r
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!(names::DATABASE_ERRORS).increment(1);
                    let delay = outboxd_core::retry::database_backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?delay, "dispatching events failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            self.announce(&round);
            let wait = activity.observe(round.events, origin.elapsed().as_secs_f64(), &policy);
            if round.events as i64 >= limit {
                // A full batch: more are waiting. Past the batch, the
                // express lane's events.
                if round.events as i64 > limit {
                    lane_used_at = Some(Instant::now());
                }
                long_pass = Some((round.events, started.elapsed()));
                continue;
            }
            long_pass = None;
            catching_up = false;
            match wait {
                Wait::Poll(pause) => {
                    // Events come fast: poll, and spare the application's
                    // commits the notification.
                    if notify_requested {
                        notify_requested = !self.set_wakeup(false).await;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Wait::Notified if round.events > 0 => {
                    // Look again at once: more may have come meanwhile.
                }
                Wait::Notified if !notify_requested => {
                    // Ask for notifications, then look once more: an event
                    // that committed just before the flag was set sent none.
                    notify_requested = self.set_wakeup(true).await;
                }
                Wait::Notified => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
            }
        }
    }

    /// How many events to claim: as many as the webhook with the most room
    /// can take, once that is at least a quarter of a window (so batches do
    /// not shrink to a few events). While every webhook is that full it
    /// waits for the deliverer to free some, at most a poll interval.
    async fn pace(&self, handoff: &Handoff, shutdown: &CancellationToken) -> Pace {
        let enough = handoff.room.windows().enough_for_fan_out();
        let give_up = tokio::time::Instant::now() + self.poll_interval;
        loop {
            match handoff.room.most_available(self.cache.len()) {
                // No webhook: nothing to hand over, nothing to wait for.
                None => return Pace::Room(self.batch_size),
                Some(room) if room >= enough => {
                    return Pace::Room((room as i64).min(self.batch_size))
                }
                Some(_) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Pace::Shutdown,
                _ = handoff.room.published() => {}
                _ = tokio::time::sleep_until(give_up) => return Pace::NoneFor,
            }
        }
    }

    /// Counts a round's events and tells the deliverer of the deliveries
    /// it left `pending` for a claim.
    fn announce(&self, round: &Round) {
        if round.events > 0 {
            metrics::counter!(names::EVENTS_DISPATCHED).increment(round.events as u64);
            if round.deliveries > round.handed {
                self.deliveries_ready.notify_one();
            }
        }
    }

    /// Returns whether the flag now has the wanted value.
    async fn set_wakeup(&self, requested: bool) -> bool {
        let result = async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(SET_WAKEUP).await?;
            client.execute(&stmt, &[&requested]).await?;
            Ok::<_, Error>(())
        }
        .await;
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "could not set the wake-up flag");
                false
            }
        }
    }

    /// The ordering key of each delivery to an ordered webhook (None for
    /// the others and for events without a key), from the key its event
    /// came with (`keys`, by the delivery's event); None when no delivery
    /// of the batch has one, so an unordered batch takes the one-statement
    /// insert.
    fn ordering_keys(
        &self,
        keys: &[Option<&str>],
        webhook_ids: &[i64],
    ) -> Option<Vec<Option<String>>> {
        if !self.cache.has_ordered() || keys.iter().all(Option::is_none) {
            return None;
        }
        let ordered = self.cache.ordered_among(webhook_ids);
        let keys: Vec<Option<String>> = keys
            .iter()
            .zip(&ordered)
            .map(|(k, &o)| k.filter(|_| o).map(str::to_owned))
            .collect();
        keys.iter().any(Option::is_some).then_some(keys)
    }

    /// Opens the round's transaction and takes its events, or returns the
    /// webhooks' version the cache must reach before they are matched. The
    /// version is read after the events, in a later snapshot (READ
    /// COMMITTED): every change committed before them is in it. The three
    /// statements go in one round trip.
    async fn next_events(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        limit: i64,
        express: i64,
    ) -> Result<Result<Vec<tokio_postgres::Row>, i64>, Error> {
        let begin = client.prepare_cached("BEGIN").await?;
        let next = client.prepare_cached(NEXT_EVENTS).await?;
        let version = client.prepare_cached(WEBHOOKS_VERSION).await?;
        // The express lane serves tenants: without a tenant's webhook it
        // stays shut. Keyed events stay in the pass while a platform
        // webhook is ordered (it gets every tenant's events of a key).
        let express: i64 = if self.cache.has_tenants() { express } else { 0 };
        let express_keyed = !self.cache.has_platform_ordered();
        let params: [&(dyn ToSql + Sync); 4] =
            [&limit, &HANDOFF_PAYLOAD_BYTES, &express, &express_keyed];
        let (_, rows, version) = tokio::try_join!(
            client.query(&begin, &[]),
            client.query(&next, &params),
            client.query_one(&version, &[])
        )?;
        let version: i64 = version.get(0);
        if !rows.is_empty() && self.cache.version() < version {
            return Ok(Err(version));
        }
        Ok(Ok(rows))
    }

    /// Takes one full batch of new events and fans it out.
    pub async fn dispatch_once(&self) -> Result<Round, Error> {
        self.dispatch(self.batch_size, self.batch_size).await
    }

    /// Takes up to `limit` new events of the pass, then up to `express` of
    /// the express lane, and fans them out. With `limit` 0, the lane's
    /// alone while a pass goes on (V27).
    async fn dispatch(&self, limit: i64, express: i64) -> Result<Round, Error> {
        loop {
            match self.try_dispatch(limit, express).await? {
                Ok(round) => return Ok(round),
                Err(version) => {
                    tracing::debug!(version, "fan-out waits for the webhook cache");
                    self.cache.caught_up(&self.pool, version).await?;
                }
            }
        }
    }

    /// One round, or the webhooks' version the cache must reach first: then
    /// nothing was taken, and the connection goes back to the pool while
    /// the cache catches up (reloading it may need one).
    async fn try_dispatch(&self, limit: i64, express: i64) -> Result<Result<Round, i64>, Error> {
        let client = self.pool.get().await?;
        let result = self.fan_out(&client, limit, express).await;
        if result.is_err() {
            // Whatever was not sent, the session leaves no transaction
            // open (a statement that failed aborted it; this ends it).
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// The round on one session, in one transaction that it opens and ends:
    /// two round trips, one for the events and one for the insert and the
    /// commit, so the progress row's lock, which every replica's fan-out
    /// waits for, is held only while the statements run and the events are
    /// matched, not across further waits for this task to be scheduled.
    async fn fan_out(
        &self,
        client: &deadpool_postgres::ClientWrapper,
        limit: i64,
        express: i64,
    ) -> Result<Result<Round, i64>, Error> {
        let rows = match self.next_events(client, limit, express).await? {
            Ok(rows) => rows,
            Err(version) => {
                client.batch_execute("ROLLBACK").await?;
                return Ok(Err(version));
            }
        };
        if rows.is_empty() {
            client.batch_execute("COMMIT").await?;
            return Ok(Ok(Round::default()));
        }
        let mut event_ids = Vec::with_capacity(rows.len());
        let mut webhook_ids = Vec::with_capacity(rows.len());
        // The ordering key of each delivery's event.
        let mut event_keys = Vec::with_capacity(rows.len());
        let mut row_of: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
        // One copy of each payload, shared by the event's deliveries.
        let payloads: Vec<Option<Arc<str>>> = rows
            .iter()
            .map(|r| r.get::<_, Option<&str>>(3).map(Arc::from))
            .collect();
        // Only deliveries whose payload came along can be handed over.
        let mut offered = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let event_id: i64 = row.get(0);
            let event_type: &str = row.get(1);
            let target: Option<i64> = row.get(2);
            let tenant: Option<&str> = row.get(5);
            let key: Option<&str> = row.get(6);
            row_of.insert(event_id, i);
            for webhook_id in self.cache.recipients(event_type, target, tenant) {
                event_ids.push(event_id);
                webhook_ids.push(webhook_id);
                event_keys.push(key);
                offered.push(payloads[i].is_some());
            }
        }
        if event_ids.is_empty() {
            client.batch_execute("COMMIT").await?;
            return Ok(Ok(Round {
                events: rows.len(),
                ..Round::default()
            }));
        }
        let keys = self.ordering_keys(&event_keys, &webhook_ids);
        // Only a key's earliest delivery in the batch can go now: the rest
        // are held, and room taken for them would only come back.
        let later = keys.as_deref().map_or_else(Vec::new, |keys| {
            later_in_batch(&webhook_ids, keys, &event_ids)
        });
        for (o, &l) in offered.iter_mut().zip(&later) {
            *o &= !l;
        }
        // Room taken per webhook; the oldest events' deliveries get it.
        let at = Instant::now();
        let (taken, claimed) = match &self.handoff {
            None => (HashMap::new(), vec![false; event_ids.len()]),
            Some(handoff) => {
                let candidates: Vec<i64> = webhook_ids
                    .iter()
                    .zip(&offered)
                    .filter(|(_, &o)| o)
                    .map(|(&w, _)| w)
                    .collect();
                let (taken, got) = handoff.room.take_for(&candidates);
                let mut got = got.into_iter();
                let claimed = offered
                    .iter()
                    .map(|&o| o && got.next().unwrap_or(false))
                    .collect();
                (taken, claimed)
            }
        };
        let written = async {
            let lease_ms = self
                .handoff
                .as_ref()
                .map_or(0.0, |h| h.lease.as_secs_f64() * 1000.0);
            let commit = client.prepare_cached("COMMIT").await?;
            // The commit goes with the insert: a failed insert aborts the
            // transaction, and the COMMIT then ends it as a rollback.
            let inserted = match &keys {
                None => {
                    let insert = client.prepare_cached(INSERT_DELIVERIES).await?;
                    let mut webhooks = webhook_ids.clone();
                    webhooks.sort_unstable();
                    webhooks.dedup();
                    let params: [&(dyn ToSql + Sync); 5] =
                        [&event_ids, &webhook_ids, &claimed, &lease_ms, &webhooks];
                    let (inserted, _) = tokio::try_join!(
                        client.query(&insert, &params),
                        client.query(&commit, &[])
                    )?;
                    inserted
                }
                Some(keys) => {
                    let (lock_webhooks, lock_keys): (Vec<i64>, Vec<&str>) = webhook_ids
                        .iter()
                        .zip(keys)
                        .filter_map(|(&w, k)| Some((w, k.as_deref()?)))
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .unzip();
                    let lock = client.prepare_cached(LOCK_KEYS).await?;
                    let insert = client.prepare_cached(INSERT_ORDERED).await?;
                    let lock_params: [&(dyn ToSql + Sync); 2] = [&lock_webhooks, &lock_keys];
                    let insert_params: [&(dyn ToSql + Sync); 6] =
                        [&event_ids, &webhook_ids, &claimed, keys, &lease_ms, &later];
                    // One round trip: the locks are held for the insert,
                    // not for a wait on the network between the two.
                    let (_, inserted, _) = tokio::try_join!(
                        client.query(&lock, &lock_params),
                        client.query(&insert, &insert_params),
                        client.query(&commit, &[])
                    )?;
                    inserted
                }
            };
            Ok::<_, Error>(inserted)
        }
        .await;
        // On an error nothing was claimed, and the room goes back.
        let inserted = written.as_deref().unwrap_or_default();
        let mut handed = Vec::new();
        for r in inserted.iter().filter(|r| r.get::<_, bool>(3)) {
            let event_id: i64 = r.get(1);
            let row = row_of[&event_id];
            let event = &rows[row];
            let Some(payload) = payloads[row].clone() else {
                continue;
            };
            handed.push(Claimed {
                delivery_id: r.get(0),
                lease: 1,
                attempt: 1,
                event_id,
                webhook_id: r.get(2),
                event_type: event.get(1),
                payload,
                created_at: event.get(4),
                ordering_key: r.get(4),
            });
        }
        let round = Round {
            events: rows.len(),
            deliveries: inserted.len() as u64,
            handed: handed.len() as u64,
        };
        if let Some(handoff) = &self.handoff {
            if !taken.is_empty() {
                // A closed channel means the deliverer has stopped: the
                // leases expire and the deliveries are sent again.
                let _ = handoff.to_deliverer.send(Handed {
                    claimed: handed,
                    taken,
                    at,
                });
            }
        }
        written.map(|_| Ok(round))
    }
}

/// For each delivery, whether an earlier event (a lower id, the key's
/// order) of its (webhook, ordering key) is in the same batch.
fn later_in_batch(webhook_ids: &[i64], keys: &[Option<String>], event_ids: &[i64]) -> Vec<bool> {
    let mut earliest: HashMap<(i64, &str), i64> = HashMap::new();
    for ((&w, key), &e) in webhook_ids.iter().zip(keys).zip(event_ids) {
        if let Some(key) = key {
            earliest
                .entry((w, key.as_str()))
                .and_modify(|first| *first = (*first).min(e))
                .or_insert(e);
        }
    }
    webhook_ids
        .iter()
        .zip(keys)
        .zip(event_ids)
        .map(|((&w, key), &e)| key.as_deref().is_some_and(|k| earliest[&(w, k)] < e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::later_in_batch;

    #[test]
    fn only_a_keys_lowest_event_id_of_the_batch_goes_first() {
        let key = |k: &str| Some(k.to_owned());
        // Stream order need not be id order: event 7 of key a comes first.
        let webhooks = [1, 1, 1, 2, 1];
        let keys = [key("a"), key("a"), None, key("a"), key("b")];
        let events = [7, 5, 6, 7, 8];
        assert_eq!(
            later_in_batch(&webhooks, &keys, &events),
            [true, false, false, false, false]
        );
    }
}
