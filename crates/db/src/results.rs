//! Writing attempt outcomes back: one statement per batch.
//!
//! The delivery update and the delivery-log insert are one statement over
//! `unnest` of the batch's columns. A row is updated only while it is still
//! `in_flight` under the same lease token, and only those attempts are
//! logged: a late answer from a worker whose lease expired changes nothing.
//! The attempt numbers of the log go on across replays: the claim counts
//! the attempts of the current budget, and the delivery's
//! `earlier_attempts` (those before its last replay) are added here.
//! A row the server refuses for its values is isolated and written without
//! them, so one receiver's answer cannot fail the results of others.
//! A batch with deliveries that keep an ordering key's order is one
//! transaction instead: lock their keys, write, then promote each finished
//! key's next held delivery (`PROMOTE`), straight to `in_flight` under a
//! lease when the deliverer has room for its webhook (handed over as the
//! fan-out hands over, `crate::handoff`), else to `pending`. The whole
//! transaction goes in one round trip, so the keys' locks, which the
//! fan-out waits for, are held only while its statements run.

use chrono::{DateTime, Utc};
use outboxd_core::outcome::Outcome;
use outboxd_core::DeliveryState;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use tokio_postgres::types::ToSql;

use crate::dispatch::HANDOFF_PAYLOAD_BYTES;
use crate::{claim, Error, Handed, Handoff, Pool};

const RECORD: &str = "
WITH r AS (
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int4[],
                         $6::timestamptz[], $7::float8[], $8::int4[], $9::text[],
                         $10::text[], $11::text[], $12::text[], $13::float8[], $14::text[])
        AS r(delivery_id, lease, event_id, webhook_id, attempt, started_at, duration_ms,
             status_code, error, response_body, outcome, state, delay_ms, url)),
done AS (
    UPDATE outbox.deliveries d
       SET state = r.state,
           last_status = r.status_code,
           last_error = r.error,
           next_attempt_at = CASE WHEN r.state = 'pending'
                                  THEN now() + r.delay_ms * interval '1 millisecond'
                                  ELSE d.next_attempt_at END,
           locked_until = NULL,
           delivered_at = CASE WHEN r.state = 'delivered' THEN now() END,
           updated_at = now()
      FROM r
     WHERE d.id = r.delivery_id AND d.lease = r.lease AND d.state = 'in_flight'
    RETURNING d.id, d.earlier_attempts),
ins AS (
    INSERT INTO outbox.delivery_attempts
           (delivery_id, event_id, webhook_id, attempt, started_at, duration_ms,
            status_code, error, response_body, outcome, url)
    SELECT r.delivery_id, r.event_id, r.webhook_id, done.earlier_attempts + r.attempt,
           r.started_at, r.duration_ms, r.status_code, r.error, r.response_body, r.outcome,
           r.url
      FROM r JOIN done ON done.id = r.delivery_id
     WHERE r.state <> 'cancelled')
SELECT id FROM done";

/// First statement of a batch with ordered deliveries: the locks of their
/// keys, which the fan-out and replays take too before they change a key's
/// head (see `dispatch::LOCK_KEYS` for why neither then misses the other).
const LOCK_FINISHING: &str = "SELECT outbox.lock_keys($1::int8[], $2::text[])";

/// Last statement of such a batch, after `RECORD`: in its fresh snapshot,
/// the next held delivery (lowest event id) of each key whose head this
/// transaction finished (`$1`: the batch's keyed deliveries; a row counts
/// only if this transaction wrote it, so a result fenced off or written
/// twice promotes nothing) and that no longer blocks: delivered, cancelled,
/// failed under skip, and under halt only with no earlier failure not
/// released (the rule of `outbox.next_held`). A head retried later stays
/// the head. No probe for another head: while the webhook is ordered a key
/// has one, this one, and its lock is held, so none appears meanwhile
/// (deliveries released by turning `ordered` off keep no order); such a
/// probe reads every held delivery of the key, which would make a long
/// backlog of one key drain in time quadratic in its length. The row's
/// `xmin` is compared with the low 32 bits of the transaction's `xid8`,
/// which is what an `xid` holds. Of a webhook's promoted deliveries, the
/// oldest `$3` (its room, for webhook `$2`) go `in_flight` under a lease
/// of `$4` ms, attempt and fencing token counted as a claim counts them,
/// when the webhook is enabled, not paused by any replica
/// (`outbox.webhook_health`) and the payload is at most `$5` bytes as
/// stored; the rest go `pending`, due now. The payload comes back only for
/// those in flight.
const PROMOTE: &str = "
WITH f AS (
    SELECT DISTINCT d.webhook_id, d.ordering_key, w.ordered AND w.ordering_policy = 'halt' AS halt
      FROM outbox.deliveries d
      JOIN outbox.webhooks w ON w.id = d.webhook_id
     WHERE d.id = ANY ($1::int8[])
       AND d.state IN ('delivered', 'failed', 'cancelled')
       AND d.ordering_key IS NOT NULL
       AND d.xmin::text::int8 = pg_current_xact_id()::text::int8 % 4294967296),
n AS (
    SELECT x.id, x.webhook_id, x.event_id,
           row_number() OVER (PARTITION BY x.webhook_id ORDER BY x.event_id) AS rank
      FROM f
     CROSS JOIN LATERAL (
           SELECT h.id, h.webhook_id, h.event_id FROM outbox.deliveries h
            WHERE h.webhook_id = f.webhook_id AND h.ordering_key = f.ordering_key
              AND h.state = 'held'
            ORDER BY h.event_id
            LIMIT 1) x
     WHERE NOT (f.halt AND EXISTS (
           SELECT 1 FROM outbox.deliveries b
            WHERE b.webhook_id = f.webhook_id AND b.ordering_key = f.ordering_key
              AND b.state IN ('pending', 'in_flight', 'held', 'failed')
              AND b.state = 'failed' AND b.event_id < x.event_id
              AND b.released_at IS NULL
           OFFSET 0))),
g AS (
    SELECT n.id, e.event_type, e.payload, e.created_at,
           n.rank <= coalesce(r.room, 0)
           AND w.enabled
           AND pg_column_size(e.payload) <= $5
           AND NOT EXISTS (SELECT 1 FROM outbox.webhook_health wh
                            WHERE wh.webhook_id = n.webhook_id
                              AND wh.paused_until > now()) AS go
      FROM n
      JOIN outbox.webhooks w ON w.id = n.webhook_id
      JOIN outbox.events e ON e.id = n.event_id
      LEFT JOIN unnest($2::int8[], $3::int8[]) AS r(webhook_id, room)
             ON r.webhook_id = n.webhook_id)
UPDATE outbox.deliveries d
   SET state = CASE WHEN g.go THEN 'in_flight' ELSE 'pending' END,
       attempts = d.attempts + g.go::int4,
       lease = d.lease + g.go::int4::int8,
       locked_until = CASE WHEN g.go THEN now() + $4 * interval '1 millisecond' END,
       next_attempt_at = now(),
       updated_at = now()
  FROM g
 WHERE d.id = g.id AND d.state = 'held'
RETURNING d.id, d.lease, d.attempts, d.event_id, d.webhook_id, g.event_type,
          CASE WHEN g.go THEN g.payload::text END, g.created_at, d.ordering_key,
          d.state = 'in_flight'";

/// The statements of a batch written in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Step {
    Begin,
    Lock,
    Record,
    Disable,
    Promote,
    Commit,
}

/// 410 Gone: the receiver unsubscribed. The webhook is disabled, and the
/// trigger on `enabled` cancels its waiting deliveries.
const DISABLE: &str = "
UPDATE outbox.webhooks
   SET enabled = false, disabled_at = now(), disabled_reason = $2
 WHERE id = ANY($1::int8[]) AND enabled
RETURNING id";

/// What happened to one attempt, ready to be written.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub lease: i64,
    pub event_id: i64,
    pub webhook_id: i64,
    /// The attempt's number within the current budget (`Claimed::attempt`).
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    /// The URL the request went to; None when none was sent.
    pub url: Option<String>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub outcome: Outcome,
    /// For a retry: how long from now until the next attempt.
    pub retry_in_ms: Option<f64>,
    /// The receiver answered 410 Gone.
    pub gone: bool,
    /// The webhook is gone from the cache (disabled or deleted): no request
    /// was sent; the delivery is cancelled and no attempt is logged.
    pub cancelled: bool,
    /// The delivery's ordering key when it keeps its key's order
    /// (`Claimed::ordering_key`): finishing it may promote the next one.
    pub ordering_key: Option<String>,
}

impl AttemptRecord {
    /// This result with the body and error the server refused replaced by
    /// a note naming the SQLSTATE: status, outcome and timing are kept.
    pub fn refused(&self, sqlstate: &str) -> AttemptRecord {
        let note = format!("[not stored: the database refused it (SQLSTATE {sqlstate})]");
        AttemptRecord {
            response_body: self.response_body.as_ref().map(|_| note.clone()),
            error: self.error.as_ref().map(|_| note),
            ..self.clone()
        }
    }

    fn state(&self) -> DeliveryState {
        if self.cancelled {
            DeliveryState::Cancelled
        } else {
            self.outcome.into()
        }
    }
}

/// What a batch write changed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Delivery ids whose result was accepted (lease still held).
    pub accepted: Vec<i64>,
    /// Webhooks disabled because they answered 410.
    pub disabled: Vec<i64>,
    /// Held deliveries promoted because the head of their key finished,
    /// those handed over included.
    pub promoted: u64,
    /// Of those, promoted in flight and handed to the deliverer.
    pub handed: u64,
}

/// Writes a batch. When the server refuses it for its values (a data error,
/// not a lost connection), the batch is halved until the refused rows are
/// alone; the rest is written, and each refused row is written again with
/// what came from the receiver replaced by a note
/// ([`AttemptRecord::refused`]), so it is not sent again and again.
pub async fn record(pool: &Pool, batch: &[AttemptRecord]) -> Result<Recorded, Error> {
    record_handing_over(pool, batch, None).await
}

/// [`record`], with the deliveries it promotes claimed for the deliverer
/// at the other end of `handoff` as far as its room allows, and sent
/// there; a deliverer that has stopped gets none (what was claimed for it
/// as it stopped is handed back unsent).
pub async fn record_handing_over(
    pool: &Pool,
    batch: &[AttemptRecord],
    handoff: Option<&Handoff>,
) -> Result<Recorded, Error> {
    let handoff = handoff.filter(|h| !h.to_deliverer.is_closed());
    let mut recorded = Recorded::default();
    let mut todo = vec![batch];
    while let Some(part) = todo.pop() {
        let written = match write(pool, part, handoff).await {
            Err(e) if e.data_error_code().is_some() && part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                todo.extend([b, a]);
                continue;
            }
            Err(e) if e.data_error_code().is_some() => {
                let code = e.data_error_code().unwrap_or_default().to_owned();
                tracing::warn!(delivery_id = part[0].delivery_id, error = %e,
                    "the database refused a delivery result; writing it without the receiver's answer");
                match write(pool, &[part[0].refused(&code)], handoff).await {
                    Err(e) if e.data_error_code().is_some() => {
                        // Retrying it would hold up every later batch.
                        tracing::error!(delivery_id = part[0].delivery_id, error = %e,
                            "could not write a delivery result even without the receiver's answer; the delivery will be sent again when its lease expires");
                        continue;
                    }
                    other => other?,
                }
            }
            other => other?,
        };
        recorded.accepted.extend(written.accepted);
        recorded.disabled.extend(written.disabled);
        recorded.promoted += written.promoted;
        recorded.handed += written.handed;
    }
    Ok(recorded)
}

async fn write(
    pool: &Pool,
    batch: &[AttemptRecord],
    handoff: Option<&Handoff>,
) -> Result<Recorded, Error> {
    if batch.is_empty() {
        return Ok(Recorded::default());
    }
    let col = |f: &dyn Fn(&AttemptRecord) -> i64| batch.iter().map(f).collect::<Vec<i64>>();
    let delivery_ids = col(&|r| r.delivery_id);
    let leases = col(&|r| r.lease);
    let event_ids = col(&|r| r.event_id);
    let webhook_ids = col(&|r| r.webhook_id);
    let attempts: Vec<i32> = batch.iter().map(|r| r.attempt).collect();
    let started: Vec<DateTime<Utc>> = batch.iter().map(|r| r.started_at).collect();
    let durations: Vec<f64> = batch.iter().map(|r| r.duration_ms).collect();
    let statuses: Vec<Option<i32>> = batch.iter().map(|r| r.status_code).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|r| r.error.as_deref()).collect();
    let bodies: Vec<Option<&str>> = batch.iter().map(|r| r.response_body.as_deref()).collect();
    let outcomes: Vec<&str> = batch.iter().map(|r| r.outcome.as_str()).collect();
    let states: Vec<&str> = batch.iter().map(|r| r.state().as_str()).collect();
    let delays: Vec<Option<f64>> = batch.iter().map(|r| r.retry_in_ms).collect();
    let urls: Vec<Option<&str>> = batch.iter().map(|r| r.url.as_deref()).collect();
    let gone: Vec<i64> = batch
        .iter()
        .filter(|r| r.gone)
        .map(|r| r.webhook_id)
        .collect();

    let params: [&(dyn ToSql + Sync); 14] = [
        &delivery_ids,
        &leases,
        &event_ids,
        &webhook_ids,
        &attempts,
        &started,
        &durations,
        &statuses,
        &errors,
        &bodies,
        &outcomes,
        &states,
        &delays,
        &urls,
    ];
    // Results of deliveries that keep a key's order and left the head
    // state (a retry stays the head: nothing to promote).
    let finished_keys: Vec<(i64, i64, &str)> = batch
        .iter()
        .filter_map(|r| Some((r.delivery_id, r.webhook_id, r.ordering_key.as_deref()?)))
        .collect();
    let is_head: HashSet<i64> = batch
        .iter()
        .filter(|r| r.state() == DeliveryState::Pending)
        .map(|r| r.delivery_id)
        .collect();
    let client = pool.get().await?;
    if gone.is_empty() && finished_keys.is_empty() {
        // The common case: one statement, its own transaction.
        let stmt = client.prepare_cached(RECORD).await?;
        let rows = client.query(&stmt, &params).await?;
        let accepted = rows.iter().map(|r| r.get(0)).collect();
        return Ok(Recorded {
            accepted,
            ..Recorded::default()
        });
    }
    // A 410 or ordered deliveries: the results, the disable and the
    // promotions commit together.
    let promoting = Promoting::new(batch, handoff);
    // Deliveries that left the head state (a retry stays the head). Those
    // whose result is fenced promote nothing (`PROMOTE` counts only rows
    // this transaction wrote): their delivery is someone else's head
    // again, or finished and promoted by its writer.
    let promote_ids: Vec<i64> = finished_keys
        .iter()
        .filter(|k| !is_head.contains(&k.0))
        .map(|&(id, _, _)| id)
        .collect();
    let (lock_webhooks, lock_keys): (Vec<i64>, Vec<&str>) =
        finished_keys.iter().map(|&(_, w, k)| (w, k)).unzip();
    let (room_webhooks, rooms) = promoting.rooms();
    let reason = "the endpoint answered 410 Gone";
    let written = async {
        let begin = client.prepare_cached("BEGIN").await?;
        let lock = client.prepare_cached(LOCK_FINISHING).await?;
        let record = client.prepare_cached(RECORD).await?;
        let disable = client.prepare_cached(DISABLE).await?;
        let promote = client.prepare_cached(PROMOTE).await?;
        let commit = client.prepare_cached("COMMIT").await?;
        let lock_params: [&(dyn ToSql + Sync); 2] = [&lock_webhooks, &lock_keys];
        let disable_params: [&(dyn ToSql + Sync); 2] = [&gone, &reason];
        let promote_params: [&(dyn ToSql + Sync); 5] = [
            &promote_ids,
            &room_webhooks,
            &rooms,
            &promoting.lease_ms,
            &HANDOFF_PAYLOAD_BYTES,
        ];
        // One round trip: the keys' locks are held for the statements'
        // run on the server, not for waits on the network between them.
        // A statement that fails aborts the transaction and the COMMIT
        // at the end rolls it back.
        let mut steps = vec![(Step::Begin, client.query(&begin, &[]))];
        if !lock_webhooks.is_empty() {
            steps.push((Step::Lock, client.query(&lock, &lock_params)));
        }
        steps.push((Step::Record, client.query(&record, &params)));
        if !gone.is_empty() {
            steps.push((Step::Disable, client.query(&disable, &disable_params)));
        }
        if !promote_ids.is_empty() {
            steps.push((Step::Promote, client.query(&promote, &promote_params)));
        }
        steps.push((Step::Commit, client.query(&commit, &[])));
        let (names, futures): (Vec<Step>, Vec<_>) = steps.into_iter().unzip();
        let answers = match futures_util::future::try_join_all(futures).await {
            Ok(answers) => answers,
            Err(e) => {
                // Whatever was not sent, the session leaves no transaction open.
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e.into());
            }
        };
        let mut answers: HashMap<Step, Vec<tokio_postgres::Row>> =
            names.into_iter().zip(answers).collect();
        let mut take = |step| answers.remove(&step).unwrap_or_default();
        let accepted: Vec<i64> = take(Step::Record).iter().map(|r| r.get(0)).collect();
        let disabled: Vec<i64> = take(Step::Disable).iter().map(|r| r.get(0)).collect();
        Ok::<_, Error>((accepted, disabled, take(Step::Promote)))
    }
    .await;
    // Back to the pool first: handing back takes a connection of its own.
    drop(client);
    // On an error nothing was promoted, and the room goes back.
    let promoted = written.as_ref().map_or(&[][..], |w| &w.2[..]);
    let handed = promoting.hand_over(pool, promoted).await;
    let (accepted, disabled, promoted) = written?;
    Ok(Recorded {
        accepted,
        disabled,
        promoted: promoted.len() as u64,
        handed,
    })
}

/// The room a batch's promotions may take, and handing over what they
/// claimed with it.
struct Promoting<'a> {
    handoff: Option<&'a Handoff>,
    /// Room taken per webhook: one per key of the webhook whose head
    /// finished (more than it promotes when a key has nothing held).
    taken: HashMap<i64, usize>,
    lease_ms: f64,
    at: Instant,
}

impl<'a> Promoting<'a> {
    fn new(batch: &[AttemptRecord], handoff: Option<&'a Handoff>) -> Self {
        let at = Instant::now();
        let Some(h) = handoff else {
            return Self {
                handoff,
                taken: HashMap::new(),
                lease_ms: 0.0,
                at,
            };
        };
        let mut keys: HashMap<i64, HashSet<&str>> = HashMap::new();
        for r in batch.iter().filter(|r| r.state() != DeliveryState::Pending) {
            if let Some(key) = r.ordering_key.as_deref() {
                keys.entry(r.webhook_id).or_default().insert(key);
            }
        }
        let taken = keys
            .into_iter()
            .map(|(w, keys)| (w, h.room.take(w, keys.len())))
            .filter(|&(_, n)| n > 0)
            .collect();
        Self {
            handoff,
            taken,
            lease_ms: h.lease.as_secs_f64() * 1000.0,
            at,
        }
    }

    /// The room taken, as the statement's two arrays.
    fn rooms(&self) -> (Vec<i64>, Vec<i64>) {
        self.taken.iter().map(|(&w, &n)| (w, n as i64)).unzip()
    }

    /// Sends the deliveries promoted in flight to the deliverer, with the
    /// room taken (all of it goes back as arrived, used or not). Returns
    /// how many it got; a deliverer that has stopped gets none, and their
    /// leases go back unsent.
    async fn hand_over(self, pool: &Pool, promoted: &[tokio_postgres::Row]) -> u64 {
        let Some(handoff) = self.handoff.filter(|_| !self.taken.is_empty()) else {
            return 0;
        };
        // The columns as a claim returns them, and whether it went in flight.
        let claimed = claim::from_rows(promoted.iter().filter(|r| r.get::<_, bool>(9)));
        let n = claimed.len() as u64;
        let sent = handoff.to_deliverer.send(Handed {
            claimed,
            taken: self.taken,
            at: self.at,
        });
        let Err(tokio::sync::mpsc::error::SendError(unsent)) = sent else {
            return n;
        };
        let leases: Vec<(i64, i64)> = unsent
            .claimed
            .iter()
            .map(|c| (c.delivery_id, c.lease))
            .collect();
        if let Err(e) = claim::hand_back(pool, &leases).await {
            tracing::debug!(error = %e,
                "could not hand back deliveries promoted for a stopped deliverer; their leases will expire");
        }
        0
    }
}
