//! Making a circuit breaker's decisions durable and shared (`outbox.webhook_health`).
//!
//! When a daemon's breaker opens, the pause is recorded (every replica's
//! claims then pass the webhook by, and none spends an attempt) and the
//! webhook's waiting deliveries, retries that backoff put hours ahead
//! included, are moved to the end of the pause, in batches: a recovery finds
//! its whole backlog due, with nothing left to write while it drains. The
//! webhook is disabled if it has been failing for longer than allowed with
//! no delivered attempt since. When it recovers, what was scheduled later
//! all the same (a retry written by a request that ended after the pause
//! began) is made due at once. These run only on breaker transitions, never
//! per delivery, so a healthy pipeline pays nothing for them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_postgres::types::ToSql;

use crate::{Error, Pool};

/// Records the pause, `$2` milliseconds measured on the database's clock,
/// and returns its end. A webhook deleted meanwhile (its requests were
/// running) gets no row. Served by `delivery_attempts_webhook_time`
/// (migrations/V3).
const PAUSE: &str = "
INSERT INTO outbox.webhook_health AS h (webhook_id, failing_since, paused_until, last_error)
SELECT $1::int8, now(), now() + $2::float8 * interval '1 millisecond', $3::text
 WHERE EXISTS (SELECT 1 FROM outbox.webhooks w WHERE w.id = $1)
ON CONFLICT (webhook_id) DO UPDATE
   -- A delivered attempt since (by any replica) ended the earlier run.
   SET failing_since = CASE
           WHEN h.failing_since IS NULL
             OR EXISTS (SELECT 1 FROM outbox.delivery_attempts a
                         WHERE a.webhook_id = $1 AND a.started_at > h.failing_since
                           AND a.outcome = 'delivered')
           THEN excluded.failing_since
           ELSE h.failing_since END,
       paused_until = excluded.paused_until,
       last_error = excluded.last_error,
       updated_at = now()
RETURNING paused_until";

/// One batch of a pause's move: the webhook's waiting deliveries of lane
/// `$2` (`least(attempts, 1)`, as in `deliveries_due`, migrations/V22)
/// scheduled after `$3` and before `$4` (null: no bound) go to the pause's
/// end `$5`, in schedule order, at most `$6`. A row moved is at the end,
/// outside the range, so batches go on where the last one ended. Returns
/// how many.
const MOVE_TO_PAUSE_END: &str = "
WITH waiting AS (
    SELECT id FROM outbox.deliveries
     WHERE webhook_id = $1 AND state = 'pending' AND least(attempts, 1) = $2
       AND next_attempt_at > coalesce($3::timestamptz, '-infinity')
       AND next_attempt_at < coalesce($4::timestamptz, 'infinity')
     ORDER BY next_attempt_at
     LIMIT $6
       FOR UPDATE SKIP LOCKED),
moved AS (
    UPDATE outbox.deliveries d
       SET next_attempt_at = $5, updated_at = now()
      FROM waiting
     WHERE d.id = waiting.id
    RETURNING 1)
SELECT count(*) FROM moved";

/// Disables the webhook when it has been failing for longer than `$2`
/// seconds with no delivered attempt since (another replica may be getting
/// through).
const DISABLE_IF_FAILING_TOO_LONG: &str = "
UPDATE outbox.webhooks w
   SET enabled = false, disabled_at = now(),
       disabled_reason = format('failing since %s with no successful delivery (longer than %s); last error: %s',
                                to_char(h.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'),
                                $3::text, coalesce(h.last_error, 'unknown'))
  FROM outbox.webhook_health h
 WHERE w.id = $1 AND h.webhook_id = w.id AND w.enabled
   AND h.failing_since < now() - $2::float8 * interval '1 second'
   AND NOT EXISTS (SELECT 1 FROM outbox.delivery_attempts a
                    WHERE a.webhook_id = w.id AND a.started_at > h.failing_since
                      AND a.outcome = 'delivered')
RETURNING w.id";

/// A delivered attempt ends the run of failures. Returns the time of the
/// recovery when this call ended the run (another replica's may have).
const HEALTHY: &str = "
UPDATE outbox.webhook_health
   SET failing_since = NULL, paused_until = NULL, updated_at = now()
 WHERE webhook_id = $1 AND (failing_since IS NOT NULL OR paused_until IS NOT NULL)
RETURNING now()";

/// One batch of a recovery: makes due now the webhook's waiting deliveries
/// of lane `$2` (`least(attempts, 1)`, as in `deliveries_due`) scheduled
/// later than now and untouched since the recovery at `$3` (a retry that
/// failed after it keeps its backoff), in schedule order, at most `$4`:
/// usually none, the pause having moved them to its end.
/// A row made due is no longer later than the next batch's now, so batches
/// go on where the last one ended. Returns how many.
const MAKE_DUE: &str = "
WITH later AS (
    SELECT id FROM outbox.deliveries
     WHERE webhook_id = $1 AND state = 'pending' AND least(attempts, 1) = $2
       AND next_attempt_at > now() AND updated_at < $3
     ORDER BY next_attempt_at
     LIMIT $4
       FOR UPDATE SKIP LOCKED),
moved AS (
    UPDATE outbox.deliveries d
       SET next_attempt_at = now(), updated_at = now()
      FROM later
     WHERE d.id = later.id
    RETURNING 1)
SELECT count(*) FROM moved";

/// Rows one batch of a pause's move or of a recovery writes: small enough
/// that no statement holds many row locks for long, large enough that
/// 100,000 take a few seconds.
pub const MAKE_DUE_BATCH: i64 = 1000;

/// What recording a pause did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// The pause's end, on the database's clock; none when the webhook is
    /// gone.
    pub until: Option<DateTime<Utc>>,
    /// The webhook was disabled for failing too long.
    pub disabled: bool,
}

/// Records a pause of webhook `id` for `pause`, shared by every replica;
/// with `disable_after` non-zero, disables it too when it has been failing
/// for longer than that. `last_error` is the reason of the failure that
/// opened the breaker, kept for the admin. The caller then moves its
/// waiting deliveries with [`move_to_pause_end`] (not those of a disabled
/// webhook: they are cancelled).
pub async fn pause(
    pool: &Pool,
    id: i64,
    pause: Duration,
    last_error: &str,
    disable_after: Duration,
) -> Result<Paused, Error> {
    match pause_in_tx(pool, id, pause, last_error, disable_after).await {
        // Deleted between the check and the insert: nothing to pause.
        Err(e) if e.is_missing_reference() => Ok(Paused::default()),
        other => other,
    }
}

async fn pause_in_tx(
    pool: &Pool,
    id: i64,
    pause: Duration,
    last_error: &str,
    disable_after: Duration,
) -> Result<Paused, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let until: Option<DateTime<Utc>> = tx
        .query_opt(PAUSE, &[&id, &(pause.as_secs_f64() * 1000.0), &last_error])
        .await?
        .map(|r| r.get(0));
    let disabled = if disable_after.is_zero() || until.is_none() {
        false
    } else {
        let period = humantime::format_duration(disable_after).to_string();
        !tx.query(
            DISABLE_IF_FAILING_TOO_LONG,
            &[&id, &disable_after.as_secs_f64(), &period],
        )
        .await?
        .is_empty()
    };
    tx.commit().await?;
    Ok(Paused { until, disabled })
}

/// Moves every waiting delivery of webhook `id` to `until`, the end of its
/// pause: of each lane, those scheduled before it, then those after it, in
/// batches of `MAKE_DUE_BATCH`. Returns how many.
pub async fn move_to_pause_end(pool: &Pool, id: i64, until: DateTime<Utc>) -> Result<u64, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(MOVE_TO_PAUSE_END).await?;
    let mut total = 0;
    for lane in [0i32, 1] {
        for (after, before) in [(None, Some(until)), (Some(until), None)] {
            let params: [&(dyn ToSql + Sync); 6] =
                [&id, &lane, &after, &before, &until, &MAKE_DUE_BATCH];
            total += in_batches(&client, &stmt, &params, || {}).await?;
        }
    }
    Ok(total)
}

/// Runs `stmt`, a batch that returns how many rows it wrote and goes on
/// where the last one ended, until one writes none, calling `each` after
/// every batch that wrote some. Returns how many in all.
async fn in_batches(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(),
) -> Result<u64, Error> {
    let mut total = 0;
    loop {
        let written: i64 = client.query_one(stmt, params).await?.get(0);
        if written == 0 {
            return Ok(total);
        }
        total += written as u64;
        each();
    }
}

/// Marks webhook `id` healthy again (a delivered attempt after a pause).
/// Returns when it recovered, if this call ended its run of failures (of
/// several replicas closing their breakers, one gets it).
pub async fn healthy(pool: &Pool, id: i64) -> Result<Option<DateTime<Utc>>, Error> {
    let client = pool.get().await?;
    Ok(client.query_opt(HEALTHY, &[&id]).await?.map(|r| r.get(0)))
}

/// After a recovery at `since`: makes every delivery of webhook `id` that
/// waits for a later attempt, and was not touched since, due now, fresh
/// ones first (held back by a pause another replica wrote), then retries,
/// each in schedule order and in batches of `MAKE_DUE_BATCH`, notifying
/// `ready` after each (the deliverer claims them while the next batch is
/// made). Returns how many.
pub async fn make_due(
    pool: &Pool,
    id: i64,
    since: DateTime<Utc>,
    ready: &Notify,
) -> Result<u64, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(MAKE_DUE).await?;
    let mut total = 0;
    for lane in [0i32, 1] {
        let params: [&(dyn ToSql + Sync); 4] = [&id, &lane, &since, &MAKE_DUE_BATCH];
        total += in_batches(&client, &stmt, &params, || ready.notify_one()).await?;
    }
    Ok(total)
}
