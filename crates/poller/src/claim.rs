//! Leasing due deliveries to this worker.
//!
//! One statement: lock due rows with `FOR UPDATE SKIP LOCKED` (replicas skip
//! each other's rows), keep at most the free slots of each webhook, and mark
//! the kept ones `in_flight` with a lease deadline and a new fencing token.
//! Rows locked but not kept are released when the statement ends. No lock
//! is held during the HTTP request: the lease is what reserves the row.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Error, Pool};

const CLAIM: &str = "
WITH locked AS (
    SELECT id, webhook_id, next_attempt_at
      FROM outbox.deliveries
     WHERE state = 'pending'
       AND next_attempt_at <= now()
       AND webhook_id <> ALL($2::int8[])
     ORDER BY next_attempt_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED),
ranked AS (
    SELECT l.id,
           row_number() OVER (PARTITION BY l.webhook_id ORDER BY l.next_attempt_at, l.id) AS n,
           coalesce(f.free, $5) AS free
      FROM locked l
      LEFT JOIN unnest($3::int8[], $4::int8[]) AS f(webhook_id, free) USING (webhook_id))
UPDATE outbox.deliveries d
   SET state = 'in_flight',
       attempts = d.attempts + 1,
       lease = d.lease + 1,
       locked_until = now() + $6 * interval '1 millisecond',
       updated_at = now()
  FROM ranked r, outbox.events e
 WHERE d.id = r.id
   AND r.n <= r.free
   AND e.id = d.event_id
RETURNING d.id, d.lease, d.attempts, d.event_id, d.webhook_id,
          e.event_type, e.payload::text, e.created_at";

/// Puts expired leases (a worker crashed or hung) back in the queue. The
/// attempt they counted stays counted: it may have reached the receiver.
const REAP: &str = "
UPDATE outbox.deliveries
   SET state = 'pending', locked_until = NULL, next_attempt_at = now(), updated_at = now()
 WHERE id IN (SELECT id FROM outbox.deliveries
               WHERE state = 'in_flight' AND locked_until < now()
               LIMIT 1000
                 FOR UPDATE SKIP LOCKED)";

/// Gives unfinished leases back at shutdown without spending an attempt.
const HAND_BACK: &str = "
UPDATE outbox.deliveries d
   SET state = 'pending', attempts = d.attempts - 1, locked_until = NULL,
       next_attempt_at = now(), updated_at = now()
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

/// How many more requests each webhook may have in flight.
#[derive(Debug, Clone)]
pub struct Slots {
    /// Free slots of a webhook not listed in `free`.
    pub default_free: i64,
    /// Webhooks with some requests in flight, and their free slots (0 = full).
    pub free: HashMap<i64, i64>,
}

pub async fn claim(
    pool: &Pool,
    limit: i64,
    lease: Duration,
    slots: &Slots,
) -> Result<Vec<Claimed>, Error> {
    let full: Vec<i64> = slots
        .free
        .iter()
        .filter(|(_, &f)| f <= 0)
        .map(|(&id, _)| id)
        .collect();
    let (ids, frees): (Vec<i64>, Vec<i64>) = slots
        .free
        .iter()
        .filter(|(_, &f)| f > 0)
        .map(|(&id, &f)| (id, f))
        .unzip();
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let client = pool.get().await?;
    let stmt = client.prepare_cached(CLAIM).await?;
    let rows = client
        .query(
            &stmt,
            &[&limit, &full, &ids, &frees, &slots.default_free, &lease_ms],
        )
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

/// Returns how many expired leases were put back.
pub async fn reap_expired(pool: &Pool) -> Result<u64, Error> {
    let client = pool.get().await?;
    Ok(client.execute(REAP, &[]).await?)
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
