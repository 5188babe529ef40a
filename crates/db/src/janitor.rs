//! Retention: deletes old delivery attempts, and finished events together
//! with their deliveries, once they are older than `OUTBOXD_RETENTION`.
//!
//! Work comes in batches of `BATCH` rows, each its own short transaction that
//! first takes a transaction-scoped advisory lock: one replica sweeps at a
//! time, a crash can leave no lock behind, and no lock is held for long.
//! Nothing pending or in flight is ever deleted.

use std::time::Duration;

use outboxd_metrics as names;
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool};

/// Advisory lock key: "outboxdj" in ASCII (the migration lock is "outboxd").
pub const LOCK_KEY: i64 = 0x6f75_7462_6f78_646a;

/// Rows per statement: small enough that each transaction is short.
pub const BATCH: i64 = 1000;

/// A breath between two full batches, so a large backlog is worked off
/// without crowding out the claims and result writes.
const PAUSE: Duration = Duration::from_millis(20);

/// The first sweep runs this long after start (or after `interval`, if shorter).
pub const FIRST_RUN_AFTER: Duration = Duration::from_secs(15);

const TRY_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";

/// Attempts by age alone, in the default partition only: the others are
/// retired whole (`partitions`, sql/V14), and the default one holds what
/// no partition covered (attempts written while the keeper was behind).
/// The delivery log is history, whatever the state
/// of the delivery. Ages are measured on the database's clock ($1 is the
/// retention in seconds). Rows are written in `started_at` order, give or
/// take a request's duration, so the oldest are the first by id: each batch
/// looks at the first `$2` rows of the primary key and deletes those old
/// enough; the sweep goes on until a batch deletes nothing. So no index on
/// `started_at` is kept up on every attempt (migrations/V7), and a sweep with
/// nothing to do reads one batch. `= ANY
/// (ARRAY(...))` rather than `IN (...)`, which the planner may turn into a
/// hash join over the whole table.
const DELETE_ATTEMPTS: &str = "
DELETE FROM outbox.delivery_attempts_default
 WHERE id = ANY (ARRAY(SELECT id FROM outbox.delivery_attempts_default ORDER BY id LIMIT $2))
   AND started_at < now() - $1::float8 * interval '1 second'";

/// Events are written in `created_at` order, give or take a transaction's
/// length, so the sweep walks them by id from the oldest on, `$2` at a time
/// after id `$3`, and stops at the first batch with nothing old in it. An
/// event goes once it is old, fanned out (`outbox.is_dispatched`, migrations/V8)
/// and all its deliveries reached a final state and last changed before
/// the cutoff too (a delivery replayed or retried recently keeps its
/// event), and no paused webhook's deferred row names it. The second
/// column says whether to delete it, the third whether it is old. Served
/// by the primary key and the (event_id, webhook_id) unique index (the
/// deferred rows by their first event's), so no index is kept up for
/// retention on every event.
const PICK_EVENTS: &str = "
SELECT e.id,
       old AND outbox.is_dispatched(e) AND NOT outbox.is_deferred(e.id)
           AND NOT EXISTS (SELECT 1 FROM outbox.deliveries d
                            WHERE d.event_id = e.id
                              AND (d.state NOT IN ('delivered', 'failed', 'cancelled')
                                   OR d.updated_at >= now() - $1::float8 * interval '1 second')),
       old
  FROM outbox.events e,
       LATERAL (SELECT e.created_at < now() - $1::float8 * interval '1 second') AS o(old)
 WHERE e.id > $3
 ORDER BY e.id
 LIMIT $2";

/// The state is checked again as the rows are locked: a delivery replayed a
/// moment ago is `pending` now and stays.
const DELETE_DELIVERIES: &str = "
DELETE FROM outbox.deliveries
 WHERE event_id = ANY($1::int8[])
   AND state IN ('delivered', 'failed', 'cancelled')";

/// A fresh snapshot: an event lives on while any delivery of it does, or
/// a paused webhook's deferred row (V29) names it.
const DELETE_EVENTS: &str = "
DELETE FROM outbox.events e
 WHERE e.id = ANY($1::int8[])
   AND NOT EXISTS (SELECT 1 FROM outbox.deliveries d WHERE d.event_id = e.id)
   AND NOT outbox.is_deferred(e.id)";

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub events: u64,
    pub deliveries: u64,
    pub delivery_attempts: u64,
    /// Another replica held the lock, so this sweep stopped early.
    pub busy: bool,
}

impl Deleted {
    pub fn total(&self) -> u64 {
        self.events + self.deliveries + self.delivery_attempts
    }
}

/// The retention task.
pub struct Janitor {
    pub pool: Pool,
    /// Age after which finished rows are deleted.
    pub retention: Duration,
    /// Time between two sweeps.
    pub interval: Duration,
}

/// The two passes of a sweep.
#[derive(Debug, Clone, Copy)]
enum Pass {
    Attempts,
    /// Walks events by id: the last id looked at.
    Events {
        after: i64,
    },
}

/// What one batch did: whether the sweep goes on, and rows it deleted.
#[derive(Debug, Default)]
struct Batch {
    more: bool,
    events: u64,
    deliveries: u64,
    delivery_attempts: u64,
}

impl Janitor {
    pub async fn run(self, shutdown: CancellationToken) {
        for table in ["events", "deliveries", "delivery_attempts"] {
            // Registered at zero so dashboards see the series from the start.
            metrics::counter!(names::RETENTION_DELETED, "table" => table).increment(0);
        }
        let mut next = tokio::time::Instant::now() + FIRST_RUN_AFTER.min(self.interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let swept = tokio::select! {
                // Dropping a batch mid-way rolls its transaction back.
                _ = shutdown.cancelled() => return,
                r = self.run_once() => r,
            };
            match swept {
                Ok(d) if d.total() > 0 => tracing::info!(
                    events = d.events,
                    deliveries = d.deliveries,
                    delivery_attempts = d.delivery_attempts,
                    retention = %humantime::format_duration(self.retention),
                    "retention: old rows deleted"
                ),
                Ok(d) if d.busy => tracing::debug!("retention: another replica is sweeping"),
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!(names::DATABASE_ERRORS).increment(1);
                    tracing::warn!(error = %e, retry_in = ?self.interval, "retention sweep failed");
                }
            }
            next = tokio::time::Instant::now() + self.interval;
        }
    }

    /// One sweep: batches until nothing old is left, or another replica
    /// holds the lock. Counts into `outboxd_retention_deleted_rows_total`
    /// as it goes, so a sweep cut short still reports what it did.
    pub async fn run_once(&self) -> Result<Deleted, Error> {
        let mut deleted = Deleted::default();
        for mut pass in [Pass::Attempts, Pass::Events { after: 0 }] {
            loop {
                let Some(b) = self.batch(&mut pass).await? else {
                    deleted.busy = true;
                    return Ok(deleted);
                };
                count("delivery_attempts", b.delivery_attempts);
                count("deliveries", b.deliveries);
                count("events", b.events);
                deleted.delivery_attempts += b.delivery_attempts;
                deleted.deliveries += b.deliveries;
                deleted.events += b.events;
                if !b.more {
                    break;
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
        Ok(deleted)
    }

    /// One short transaction under the advisory lock; None when another
    /// replica holds it.
    async fn batch(&self, pass: &mut Pass) -> Result<Option<Batch>, Error> {
        let age = self.retention.as_secs_f64();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let try_lock = tx.prepare_cached(TRY_LOCK).await?;
        let locked: bool = tx.query_one(&try_lock, &[&LOCK_KEY]).await?.get(0);
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let mut batch = Batch::default();
        match pass {
            Pass::Attempts => {
                let delete = tx.prepare_cached(DELETE_ATTEMPTS).await?;
                batch.delivery_attempts = tx.execute(&delete, &[&age, &BATCH]).await?;
                // A few recent rows among the first ones (a long request)
                // stay at the front until they are old too: go on while a
                // batch finds anything to delete.
                batch.more = batch.delivery_attempts > 0;
            }
            Pass::Events { after } => {
                let pick = tx.prepare_cached(PICK_EVENTS).await?;
                let rows = tx.query(&pick, &[&age, &BATCH, &*after]).await?;
                let ids: Vec<i64> = rows
                    .iter()
                    .filter(|r| r.get::<_, Option<bool>>(1) == Some(true))
                    .map(|r| r.get(0))
                    .collect();
                batch.more = rows.len() as i64 == BATCH && rows.iter().any(|r| r.get::<_, bool>(2));
                if let Some(last) = rows.last() {
                    *after = last.get(0);
                }
                if !ids.is_empty() {
                    let deliveries = tx.prepare_cached(DELETE_DELIVERIES).await?;
                    let events = tx.prepare_cached(DELETE_EVENTS).await?;
                    batch.deliveries = tx.execute(&deliveries, &[&ids]).await?;
                    batch.events = tx.execute(&events, &[&ids]).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Some(batch))
    }
}

fn count(table: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(names::RETENTION_DELETED, "table" => table).increment(n);
    }
}
