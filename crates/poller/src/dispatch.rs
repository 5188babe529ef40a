//! Fan-out: undispatched events become one delivery per matching webhook.
//!
//! One transaction per batch: claim events with `FOR UPDATE SKIP LOCKED` (so
//! replicas never take the same rows) and mark them dispatched, match them
//! against the webhook cache, insert the deliveries set-wise. A crash before
//! commit leaves the events undispatched for the next claim.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool, WebhookCache};

/// `= ANY (ARRAY(...))`: the update looks its rows up by primary key
/// whatever the planner guesses of the batch's size.
const CLAIM_EVENTS: &str = "
UPDATE outbox.events e
   SET dispatched_at = now()
 WHERE e.id = ANY (ARRAY(
           SELECT id FROM outbox.events
            WHERE dispatched_at IS NULL
            ORDER BY id
            LIMIT $1
              FOR UPDATE SKIP LOCKED))
RETURNING e.id, e.event_type, e.target_webhook_id";

const INSERT_DELIVERIES: &str = "
INSERT INTO outbox.deliveries (event_id, webhook_id)
SELECT * FROM unnest($1::int8[], $2::int8[])
ON CONFLICT (event_id, webhook_id) DO NOTHING";

/// Asks the host's insert trigger to notify (true) or to stay quiet because
/// a daemon is busy polling anyway (false). Written only on a change.
const SET_WAKEUP: &str = "UPDATE outbox.wakeup SET requested = $1 WHERE requested <> $1";

/// A round that found at least this many events means the daemon is busy:
/// it keeps polling, so the host need not pay for notifications.
const BUSY_ROUND: usize = 8;

/// The fan-out task.
pub struct Dispatcher {
    pub pool: Pool,
    pub cache: Arc<WebhookCache>,
    pub batch_size: i64,
    pub poll_interval: Duration,
    /// Notified by the listener when events may be waiting.
    pub wake: Arc<Notify>,
    /// Notified here when new deliveries exist.
    pub deliveries_ready: Arc<Notify>,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub events: usize,
    pub deliveries: u64,
}

impl Dispatcher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut notify_requested = false;
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let round = match self.dispatch_once().await {
                Ok(r) => {
                    failures = 0;
                    r
                }
                Err(e) => {
                    failures += 1;
                    metrics::counter!("outboxd_database_errors_total").increment(1);
                    let delay = outboxd_core::retry::database_backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?delay, "dispatching events failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if round.events > 0 {
                metrics::counter!("outboxd_events_dispatched_total").increment(round.events as u64);
                if round.deliveries > 0 {
                    self.deliveries_ready.notify_one();
                }
                if round.events >= BUSY_ROUND && notify_requested {
                    notify_requested = !self.set_wakeup(false).await;
                }
                continue;
            }
            if !notify_requested {
                // Ask for notifications, then look once more: an event that
                // committed just before the flag was set sent none.
                notify_requested = self.set_wakeup(true).await;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
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

    /// Claims one batch of undispatched events and fans it out.
    pub async fn dispatch_once(&self) -> Result<Round, Error> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let claim = tx.prepare_cached(CLAIM_EVENTS).await?;
        let rows = tx.query(&claim, &[&self.batch_size]).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Round::default());
        }
        let mut map = self.cache.snapshot();
        let targets_unknown = rows.iter().any(|r| {
            r.get::<_, Option<i64>>(2)
                .is_some_and(|id| !map.contains_key(&id))
        });
        if targets_unknown {
            // A test event for a webhook created a moment ago may beat the
            // change notification; look again before deciding it has none.
            self.cache.reload(&self.pool).await?;
            map = self.cache.snapshot();
        }
        let mut event_ids = Vec::with_capacity(rows.len());
        let mut webhook_ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: i64 = row.get(0);
            let event_type: &str = row.get(1);
            let target: Option<i64> = row.get(2);
            for webhook_id in WebhookCache::recipients(&map, event_type, target) {
                event_ids.push(event_id);
                webhook_ids.push(webhook_id);
            }
        }
        let deliveries = if event_ids.is_empty() {
            0
        } else {
            let insert = tx.prepare_cached(INSERT_DELIVERIES).await?;
            tx.execute(&insert, &[&event_ids, &webhook_ids]).await?
        };
        tx.commit().await?;
        Ok(Round {
            events: rows.len(),
            deliveries,
        })
    }
}
