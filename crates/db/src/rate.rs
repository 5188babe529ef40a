//! The shared token buckets of rate-limited webhooks: a take before
//! sending, a slowdown after a `429` with `Retry-After`.
//!
//! Both are one call of a SQL function (crates/db/migrations/V19__rate_limits.sql)
//! that locks the webhook's bucket row for its own few statements only, so
//! replicas share one budget and no lock is held while a request runs.

use std::time::Duration;

use outboxd_core::rate::Grant;

use crate::{Error, Pool};

const TAKE: &str = "SELECT granted, wait_ms FROM outbox.take_rate_tokens($1, $2)";

const SLOW: &str = "SELECT outbox.slow_rate($1, $2 * interval '1 millisecond')";

/// Takes up to `wanted` tokens of the webhook's bucket.
pub async fn take(pool: &Pool, webhook_id: i64, wanted: u32) -> Result<Grant, Error> {
    let wanted = i32::try_from(wanted).unwrap_or(i32::MAX);
    let client = pool.get().await?;
    let stmt = client.prepare_cached(TAKE).await?;
    let row = match client
        .query_one(&stmt, &[&webhook_id, &wanted])
        .await
        .map_err(Error::from)
    {
        // Deleted between the function's look-up and its first insert: as
        // for a webhook it finds gone, no limit holds (its deliveries are
        // cancelled, not sent).
        Err(e) if e.is_missing_reference() => {
            return Ok(Grant {
                granted: wanted.max(0) as u32,
                wait: Duration::ZERO,
            })
        }
        other => other?,
    };
    let (granted, wait_ms): (i32, f64) = (row.get(0), row.get(1));
    Ok(Grant {
        granted: granted.max(0) as u32,
        wait: Duration::from_secs_f64(wait_ms.max(0.0) / 1000.0),
    })
}

/// Slows the whole webhook down for `how_long`; returns the rate in force
/// (none for a webhook without a limit).
pub async fn slow_down(
    pool: &Pool,
    webhook_id: i64,
    how_long: Duration,
) -> Result<Option<f64>, Error> {
    let ms = how_long.as_secs_f64() * 1000.0;
    let client = pool.get().await?;
    match client
        .query_one(SLOW, &[&webhook_id, &ms])
        .await
        .map_err(Error::from)
    {
        // Deleted meanwhile: no rate to lower.
        Err(e) if e.is_missing_reference() => Ok(None),
        other => Ok(other?.get(0)),
    }
}
