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
//! transaction instead: lock their keys, write, then promote each finished key's
//! next held delivery (`PROMOTE`).

use chrono::{DateTime, Utc};
use outboxd_core::outcome::Outcome;
use outboxd_core::DeliveryState;

use crate::{Error, Pool};

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
/// the earliest held delivery of each key whose head finished and no
/// longer blocks (delivered, cancelled, failed under skip) becomes pending,
/// due now. A head retried later stays the head; so does one that failed
/// under halt (the key waits for an admin).
const PROMOTE: &str = "SELECT p FROM outbox.promote_held($1::int8[], $2::text[]) AS p";

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
    /// Held deliveries made pending because the head of their key finished.
    pub promoted: u64,
}

/// Writes a batch. When the server refuses it for its values (a data error,
/// not a lost connection), the batch is halved until the refused rows are
/// alone; the rest is written, and each refused row is written again with
/// what came from the receiver replaced by a note
/// ([`AttemptRecord::refused`]), so it is not sent again and again.
pub async fn record(pool: &Pool, batch: &[AttemptRecord]) -> Result<Recorded, Error> {
    let mut recorded = Recorded::default();
    let mut todo = vec![batch];
    while let Some(part) = todo.pop() {
        let written = match write(pool, part).await {
            Err(e) if e.data_error_code().is_some() && part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                todo.extend([b, a]);
                continue;
            }
            Err(e) if e.data_error_code().is_some() => {
                let code = e.data_error_code().unwrap_or_default().to_owned();
                tracing::warn!(delivery_id = part[0].delivery_id, error = %e,
                    "the database refused a delivery result; writing it without the receiver's answer");
                match write(pool, &[part[0].refused(&code)]).await {
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
    }
    Ok(recorded)
}

async fn write(pool: &Pool, batch: &[AttemptRecord]) -> Result<Recorded, Error> {
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

    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
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
    let mut client = pool.get().await?;
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
    let tx = client.transaction().await?;
    if !finished_keys.is_empty() {
        let (webhooks, keys): (Vec<i64>, Vec<&str>) =
            finished_keys.iter().map(|&(_, w, k)| (w, k)).unzip();
        let lock = tx.prepare_cached(LOCK_FINISHING).await?;
        tx.query(&lock, &[&webhooks, &keys]).await?;
    }
    let stmt = tx.prepare_cached(RECORD).await?;
    let rows = tx.query(&stmt, &params).await?;
    let accepted: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let mut disabled = Vec::new();
    if !gone.is_empty() {
        let reason = "the endpoint answered 410 Gone";
        disabled = tx
            .query(DISABLE, &[&gone, &reason])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
    }
    let mut promoted = 0;
    let is_head: std::collections::HashSet<i64> = batch
        .iter()
        .filter(|r| r.state() == DeliveryState::Pending)
        .map(|r| r.delivery_id)
        .collect();
    let accepted_ids: std::collections::HashSet<i64> = accepted.iter().copied().collect();
    let (webhooks, keys): (Vec<i64>, Vec<&str>) = finished_keys
        .iter()
        .filter(|k| accepted_ids.contains(&k.0) && !is_head.contains(&k.0))
        .map(|&(_, w, k)| (w, k))
        .unzip();
    if !webhooks.is_empty() {
        let stmt = tx.prepare_cached(PROMOTE).await?;
        promoted = tx.query(&stmt, &[&webhooks, &keys]).await?.len() as u64;
    }
    tx.commit().await?;
    Ok(Recorded {
        accepted,
        disabled,
        promoted,
    })
}
