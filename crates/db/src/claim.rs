//! Leasing due deliveries to this worker.
//!
//! One statement: for each webhook the worker has room for, lock its due rows
//! (oldest first, at most the room) with `FOR UPDATE SKIP LOCKED` through the
//! index on `(webhook_id, next_attempt_at)`, and mark them `in_flight` with a
//! lease deadline and a new fencing token. Only rows that are kept are locked,
//! and one webhook's backlog cannot crowd out another's. A webhook paused
//! by any replica's circuit breaker (`outbox.webhook_health`) is skipped, so
//! deliveries fanned out during the pause wait for its end too. No lock is
//! held during the HTTP request: the lease is what reserves the row.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Error, Pool};

/// The locked ids go through `= ANY (ARRAY(...))` so that the update finds
/// its rows by primary key: joined as a set, the planner (guessing a few
/// hundred rows) chose a scan of the whole table.
const CLAIM: &str = "
UPDATE outbox.deliveries d
   SET state = 'in_flight',
       attempts = d.attempts + 1,
       lease = d.lease + 1,
       locked_until = now() + $4 * interval '1 millisecond',
       updated_at = now()
  FROM outbox.events e
 WHERE d.id = ANY (ARRAY(
           SELECT l.id
             FROM unnest($1::int8[], $2::int8[]) AS w(webhook_id, room)
            CROSS JOIN LATERAL (
                  SELECT id
                    FROM outbox.deliveries
                   WHERE state = 'pending'
                     AND webhook_id = w.webhook_id
                     AND next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM outbox.webhook_health h
                                      WHERE h.webhook_id = w.webhook_id
                                        AND h.paused_until > now())
                   ORDER BY next_attempt_at
                   LIMIT w.room
                     FOR UPDATE SKIP LOCKED) l
            LIMIT $3))
   AND e.id = d.event_id
RETURNING d.id, d.lease, d.attempts, d.event_id, d.webhook_id,
          e.event_type, e.payload::text, e.created_at";

/// Gives unfinished leases back (at shutdown, or queued too long, or when
/// the breaker opens) without spending an attempt; a paused webhook's wait
/// for the pause to end, like its other waiting deliveries.
const HAND_BACK: &str = "
UPDATE outbox.deliveries d
   SET state = 'pending', attempts = d.attempts - 1, locked_until = NULL,
       next_attempt_at = greatest(now(), (SELECT h.paused_until FROM outbox.webhook_health h
                                            WHERE h.webhook_id = d.webhook_id)),
       updated_at = now()
  FROM unnest($1::int8[], $2::int8[]) AS r(id, lease)
 WHERE d.id = r.id AND d.lease = r.lease AND d.state = 'in_flight'";

/// A leased delivery with what the request needs from its event.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    /// The fencing token: the result is written only if it still matches.
    pub lease: i64,
    /// 1-based number of this attempt.
    pub attempt: i32,
    pub event_id: i64,
    pub webhook_id: i64,
    pub event_type: String,
    /// The payload as PostgreSQL prints jsonb: valid JSON, sent verbatim.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Leases up to `room` due deliveries of each listed webhook, `limit` in
/// all, the webhooks taken in the order given.
pub async fn claim(
    pool: &Pool,
    wants: &[(i64, i64)],
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, Error> {
    if wants.is_empty() || limit <= 0 {
        return Ok(Vec::new());
    }
    let (ids, rooms): (Vec<i64>, Vec<i64>) = wants.iter().copied().unzip();
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let client = pool.get().await?;
    let stmt = client.prepare_cached(CLAIM).await?;
    let rows = client
        .query(&stmt, &[&ids, &rooms, &limit, &lease_ms])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            delivery_id: r.get(0),
            lease: r.get(1),
            attempt: r.get(2),
            event_id: r.get(3),
            webhook_id: r.get(4),
            event_type: r.get(5),
            payload: r.get(6),
            created_at: r.get(7),
        })
        .collect())
}

/// Returns how many leases were handed back.
pub async fn hand_back(pool: &Pool, leases: &[(i64, i64)]) -> Result<u64, Error> {
    if leases.is_empty() {
        return Ok(0);
    }
    let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().copied().unzip();
    let client = pool.get().await?;
    Ok(client.execute(HAND_BACK, &[&ids, &tokens]).await?)
}
