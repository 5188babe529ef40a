//! Deferred deliveries: what a paused webhook's events wait as, and when
//! they become deliveries.
//!
//! While a webhook's breaker holds it paused, the fan-out writes one row per
//! round for it (`outbox.deferred_deliveries`, V29) rather than a delivery
//! per event, so a dead endpoint's backlog costs the fan-out of the others
//! a row per round and the pause's end moves nothing. The rows become
//! deliveries (`outbox.expand_deferred`) when the webhook recovers (the
//! replica that records the recovery expands them), and the sweep here,
//! every second on each replica, catches what no recovery reached: a
//! webhook healthy again whose rows were not expanded (that replica stopped
//! midway, or its expansion failed), disabled or deleted (cancelled
//! deliveries), or whose pause ended with nothing waiting to probe it with
//! (one row, whose deliveries are the probe).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool, PooledClient};

/// How often each replica sweeps: the longest a paused webhook whose pause
/// has ended waits for a probe made of its deferred events.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Rows one expansion statement takes: each holds at most a fan-out
/// batch's events, so a statement writes a bounded number of deliveries.
pub const EXPAND_ROWS: i32 = 16;

const EXPAND: &str = "SELECT outbox.expand_deferred($1, $2)";

/// The webhooks with deferred rows (a skip scan of the primary key: one
/// probe per such webhook, however many rows each has) that need an
/// expansion now, and whether all of it (healthy again, disabled or gone)
/// or one row (paused no longer, nothing due to probe with, in either lane
/// of `deliveries_due`).
const DUE: &str = "
WITH RECURSIVE w(webhook_id) AS (
    (SELECT webhook_id FROM outbox.deferred_deliveries ORDER BY webhook_id LIMIT 1)
  UNION ALL
    SELECT (SELECT f.webhook_id FROM outbox.deferred_deliveries f
             WHERE f.webhook_id > w.webhook_id ORDER BY f.webhook_id LIMIT 1)
      FROM w WHERE w.webhook_id IS NOT NULL)
SELECT w.webhook_id, h.paused_until IS NULL OR x.id IS NULL OR NOT x.enabled
  FROM w
  LEFT JOIN outbox.webhook_health h ON h.webhook_id = w.webhook_id
  LEFT JOIN outbox.webhooks x ON x.id = w.webhook_id
 WHERE w.webhook_id IS NOT NULL
   AND (h.paused_until IS NULL OR x.id IS NULL OR NOT x.enabled
        OR (h.paused_until <= now()
            AND NOT EXISTS (SELECT 1 FROM outbox.deliveries d
                             WHERE d.webhook_id = w.webhook_id AND d.state = 'pending'
                               AND least(d.attempts, 1) = 0 AND d.next_attempt_at <= now())
            AND NOT EXISTS (SELECT 1 FROM outbox.deliveries d
                             WHERE d.webhook_id = w.webhook_id AND d.state = 'pending'
                               AND least(d.attempts, 1) = 1 AND d.next_attempt_at <= now())))";

/// Makes every deferred row of webhook `id` deliveries, `EXPAND_ROWS` at a
/// time, telling `ready` after each statement that made some. Returns how
/// many rows.
pub async fn expand(pool: &Pool, id: i64, ready: &Notify) -> Result<u64, Error> {
    let client = pool.get().await?;
    let mut total = 0;
    loop {
        let rows = expand_some(&client, id, EXPAND_ROWS, ready).await?;
        if rows == 0 {
            return Ok(total);
        }
        total += rows;
    }
}

/// One expansion statement: up to `rows` of webhook `id`'s deferred rows,
/// oldest first; `ready` is told when it made some.
async fn expand_some(
    client: &PooledClient,
    id: i64,
    rows: i32,
    ready: &Notify,
) -> Result<u64, Error> {
    let stmt = client.prepare_cached(EXPAND).await?;
    let expanded: i64 = client.query_one(&stmt, &[&id, &rows]).await?.get(0);
    if expanded > 0 {
        ready.notify_one();
    }
    Ok(expanded as u64)
}

/// The sweep task.
pub struct DeferredSweeper {
    pub pool: Pool,
    pub interval: Duration,
    /// Told when deliveries were made.
    pub ready: Arc<Notify>,
}

impl DeferredSweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every::every(self.interval, &shutdown, || async {
            if let Err(e) = self.sweep().await {
                tracing::debug!(error = %e, "the sweep of deferred deliveries failed; the next one tries again");
            }
        })
        .await;
    }

    /// One sweep. Returns how many rows it expanded.
    pub async fn sweep(&self) -> Result<u64, Error> {
        let due = {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(DUE).await?;
            client.query(&stmt, &[]).await?
        };
        let mut total = 0;
        for row in due {
            let (id, all): (i64, bool) = (row.get(0), row.get(1));
            if all {
                total += expand(&self.pool, id, &self.ready).await?;
            } else {
                let client = self.pool.get().await?;
                let rows = expand_some(&client, id, 1, &self.ready).await?;
                if rows > 0 {
                    tracing::debug!(
                        webhook_id = id,
                        "deferred deliveries expanded to probe the webhook with"
                    );
                }
                total += rows;
            }
        }
        Ok(total)
    }
}
