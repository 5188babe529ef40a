//! Leasing due deliveries to this worker.
//!
//! One statement, whose cost follows the work rather than the number of
//! webhooks: it walks the webhooks that have waiting deliveries (a skip
//! scan of the index on `(webhook_id, next_attempt_at)` over pending rows,
//! one probe per webhook, from where the last claim stopped so every
//! webhook gets its turn), and for each one that is enabled, not paused by
//! any replica's circuit breaker (`outbox.webhook_health`) and has room,
//! locks its oldest due rows (at most the room) with `FOR UPDATE SKIP
//! LOCKED` and marks them `in_flight` under a lease deadline and a new
//! fencing token. A webhook's due rows come in two lanes
//! (`outboxd_core::lanes`), each a range of the same index: first
//! attempts first, then retries within the room they may fill, so a
//! backlog of retries never sorts ahead of a fresh event. The walk stops
//! as soon as the claim has its fill. The
//! deliverer names only the webhooks whose room is not the default (those
//! holding something, paused or gone), so idle webhooks cost nothing, and
//! one webhook's backlog cannot crowd out another's. No lock is held during
//! the HTTP request: the lease is what reserves the row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::lanes::Rooms;

use crate::{Error, Pool};

/// `$1` the webhook to start the walk at, `$2` a JSON object of the rooms
/// that are not `$3` for first attempts and `$7` for retries (keyed by
/// webhook id, looked up by binary search; each `[fresh, retries]`), `$4`
/// the most rows in all, `$6` the most payload bytes (the rows taken
/// in walk order while their payloads fit, the first one always), counted
/// as stored: reading the size costs nothing, while printing a large jsonb
/// to measure it costs as much as sending it. A compressed payload counts
/// less than it takes in memory; the deliverer's row limit, from the sizes
/// it has seen, bounds that. The locked ids go through `= ANY
/// (ARRAY(...))` so that the update finds its rows by primary key: joined
/// as a set, the planner (guessing a few hundred rows) chose a scan of the
/// whole table. The lanes are `least(attempts, 1)`, the second column of
/// `deliveries_due` (migrations/V22): 0 for a first attempt, 1 for a retry.
/// Each lane locks in a subquery of its own (`FOR UPDATE` is not allowed
/// on a `UNION` itself); the union's `LIMIT` keeps the two within the
/// webhook's whole room.
const CLAIM: &str = "
WITH RECURSIVE walk(webhook_id) AS (
    (SELECT webhook_id FROM outbox.deliveries
      WHERE state = 'pending' AND webhook_id >= $1
      ORDER BY webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT p.webhook_id FROM outbox.deliveries p
             WHERE p.state = 'pending' AND p.webhook_id > w.webhook_id
             ORDER BY p.webhook_id LIMIT 1)
      FROM walk w
     WHERE w.webhook_id IS NOT NULL)
UPDATE outbox.deliveries d
   SET state = 'in_flight',
       attempts = d.attempts + 1,
       lease = d.lease + 1,
       locked_until = now() + $5 * interval '1 millisecond',
       updated_at = now()
  FROM outbox.events e
 WHERE d.id = ANY (ARRAY(
    SELECT s.id FROM (
        SELECT c.id, sum(pg_column_size(ce.payload)) OVER (ORDER BY c.n) AS upto,
               pg_column_size(ce.payload) AS size
          FROM (
           SELECT l.id, row_number() OVER () AS n
             FROM walk w
            CROSS JOIN LATERAL (
                  SELECT coalesce(($2::jsonb -> w.webhook_id::text ->> 0)::int8, $3),
                         coalesce(($2::jsonb -> w.webhook_id::text ->> 1)::int8, $7)) AS r(room, retries)
            CROSS JOIN LATERAL (
                  SELECT id FROM (
                      SELECT id
                        FROM outbox.deliveries
                       WHERE state = 'pending'
                         AND webhook_id = w.webhook_id
                         AND least(attempts, 1) = 0
                         AND next_attempt_at <= now()
                       ORDER BY next_attempt_at
                       LIMIT r.room
                         FOR UPDATE SKIP LOCKED) fresh
                  UNION ALL
                  SELECT id FROM (
                      SELECT id
                        FROM outbox.deliveries
                       WHERE state = 'pending'
                         AND webhook_id = w.webhook_id
                         AND least(attempts, 1) = 1
                         AND next_attempt_at <= now()
                       ORDER BY next_attempt_at
                       LIMIT r.retries
                         FOR UPDATE SKIP LOCKED) retry
                  LIMIT r.room) l
            WHERE w.webhook_id IS NOT NULL
              AND r.room > 0
              AND EXISTS (SELECT 1 FROM outbox.webhooks wh
                           WHERE wh.id = w.webhook_id AND wh.enabled)
              AND NOT EXISTS (SELECT 1 FROM outbox.webhook_health h
                               WHERE h.webhook_id = w.webhook_id
                                 AND h.paused_until > now())
            LIMIT $4) c
          JOIN outbox.deliveries cd ON cd.id = c.id
          JOIN outbox.events ce ON ce.id = cd.event_id) s
     WHERE s.upto - s.size < $6))
   AND e.id = d.event_id
RETURNING d.id, d.lease, d.attempts, d.event_id, d.webhook_id,
          e.event_type, e.payload::text, e.created_at, d.ordering_key";

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
    /// The payload as PostgreSQL prints jsonb: valid JSON, sent verbatim;
    /// one copy shared by the deliveries of an event.
    pub payload: Arc<str>,
    pub created_at: DateTime<Utc>,
    /// The ordering key, when the delivery keeps its key's order (its
    /// webhook was ordered at fan-out): its result promotes the next one.
    pub ordering_key: Option<String>,
}

/// What a claim may take: `default` for every webhook not in `rooms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// Where the walk over the webhooks starts (the webhook the last claim
    /// ended at; 0 from the start).
    pub from_webhook: i64,
    /// Room of a webhook not listed, per lane.
    pub default: Rooms,
    /// Webhooks whose room is not the default.
    pub rooms: HashMap<i64, Rooms>,
    /// Payload bytes the claim may bring in.
    pub bytes: i64,
}

impl Wants {
    /// Only these webhooks, with these rooms (for either lane).
    pub fn only(rooms: &[(i64, usize)]) -> Self {
        Self {
            from_webhook: 0,
            default: Rooms::default(),
            rooms: rooms
                .iter()
                .map(|&(id, room)| (id, Rooms::both(room)))
                .collect(),
            bytes: i64::MAX,
        }
    }
}

/// Leases due deliveries of the webhooks `wants` has room for, at most
/// `limit` in all, walking the webhooks in id order from
/// `wants.from_webhook`.
pub async fn claim(
    pool: &Pool,
    wants: &Wants,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, Error> {
    let no_room = wants.default.fresh == 0 && wants.rooms.values().all(|r| r.fresh == 0);
    if limit <= 0 || wants.bytes <= 0 || no_room {
        return Ok(Vec::new());
    }
    let rooms: serde_json::Map<String, serde_json::Value> = wants
        .rooms
        .iter()
        .map(|(id, room)| {
            (
                id.to_string(),
                serde_json::json!([room.fresh, room.retries]),
            )
        })
        .collect();
    let rooms = serde_json::Value::Object(rooms);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let client = pool.get().await?;
    let stmt = client.prepare_cached(CLAIM).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &wants.from_webhook,
                &rooms,
                &(wants.default.fresh as i64),
                &limit,
                &lease_ms,
                &wants.bytes,
                &(wants.default.retries as i64),
            ],
        )
        .await?;
    Ok(from_rows(&rows))
}

/// The deliveries of rows returned as `CLAIM` returns them (id, lease,
/// attempts, event id, webhook id, event type, payload as text, created
/// at, ordering key), one copy of each event's payload shared by its
/// deliveries.
pub(crate) fn from_rows<'a>(
    rows: impl IntoIterator<Item = &'a tokio_postgres::Row>,
) -> Vec<Claimed> {
    let mut payloads: HashMap<i64, Arc<str>> = HashMap::new();
    rows.into_iter()
        .map(|r| Claimed {
            delivery_id: r.get(0),
            lease: r.get(1),
            attempt: r.get(2),
            event_id: r.get(3),
            webhook_id: r.get(4),
            event_type: r.get(5),
            payload: payloads
                .entry(r.get(3))
                .or_insert_with(|| r.get::<_, &str>(6).into())
                .clone(),
            created_at: r.get(7),
            ordering_key: r.get(8),
        })
        .collect()
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
