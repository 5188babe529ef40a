//! The reaper: puts expired leases back in the queue, cancels waiting
//! deliveries whose webhook is gone, and rescues ordering keys that nothing
//! holds back any more.
//!
//! A maintenance service beside the janitor and the sampler: a worker that
//! crashed or hung leaves leases nobody will finish, and a replica whose
//! webhook cache was behind may fan out to a webhook disabled a moment
//! before. Every replica runs one; `FOR UPDATE SKIP LOCKED` keeps them from
//! doing the same rows, and each statement takes at most `BATCH` rows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool};

/// Puts expired leases (a worker crashed or hung) back in the queue. The
/// attempt they counted stays counted: it may have reached the receiver.
const REAP: &str = "
UPDATE outbox.deliveries
   SET state = 'pending', locked_until = NULL, next_attempt_at = now(), updated_at = now()
 WHERE id IN (SELECT id FROM outbox.deliveries
               WHERE state = 'in_flight' AND locked_until < now()
               LIMIT 1000
                 FOR UPDATE SKIP LOCKED)";

/// Cancels waiting deliveries of webhooks that are disabled or deleted,
/// those that `$waiting` (a condition on `p`) names. The triggers on
/// `outbox.webhooks` do this when the change is made; this catches rows
/// fanned out a moment later by a replica whose webhook cache was behind,
/// which claims (made per enabled webhook) would never take. It walks the
/// webhooks with waiting deliveries (a skip scan of an index led by the
/// webhook, one probe each) rather than the waiting rows, so a large
/// backlog of live webhooks costs nothing here.
macro_rules! cancel_orphans {
    ($waiting:literal) => {
        concat!(
            "
WITH RECURSIVE walk(webhook_id) AS (
    (SELECT p.webhook_id FROM outbox.deliveries p WHERE ",
            $waiting,
            "
      ORDER BY p.webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT p.webhook_id FROM outbox.deliveries p
             WHERE ",
            $waiting,
            " AND p.webhook_id > w.webhook_id
             ORDER BY p.webhook_id LIMIT 1)
      FROM walk w
     WHERE w.webhook_id IS NOT NULL)
UPDATE outbox.deliveries d
   SET state = 'cancelled', locked_until = NULL, updated_at = now(),
       last_error = coalesce(d.last_error, 'webhook disabled or deleted')
 WHERE d.id = ANY (ARRAY(
           SELECT o.id
             FROM walk w
            CROSS JOIN LATERAL (SELECT p.id FROM outbox.deliveries p
                                 WHERE ",
            $waiting,
            " AND p.webhook_id = w.webhook_id
                                 LIMIT 1000
                                   FOR UPDATE SKIP LOCKED) o
            WHERE w.webhook_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM outbox.webhooks wh
                               WHERE wh.id = w.webhook_id AND wh.enabled)
            LIMIT 1000))"
        )
    };
}

/// Pending deliveries, walked through `deliveries_due`.
const CANCEL_ORPHANS: &str = cancel_orphans!("p.state = 'pending'");

/// Held deliveries (ordered webhooks), which wait outside `deliveries_due`:
/// walked through `deliveries_by_key`.
const CANCEL_HELD_ORPHANS: &str =
    cancel_orphans!("p.state = 'held' AND p.ordering_key IS NOT NULL");

/// The next held delivery of keys with no head and nothing blocking them,
/// held for a while (`outbox.promote_stuck_keys`, V21): the pipeline never
/// leaves such a key, since a head's writer promotes in the transaction
/// that finishes it, but an admin deleting a halted failure, the janitor
/// retiring one, or a replica whose cache still had a webhook ordered after
/// it was turned off can.
const RESCUE_KEYS: &str =
    "SELECT count(*) FROM outbox.promote_stuck_keys(1000, interval '10 seconds')";

/// How often the reaper looks.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Expired leases put back `pending`.
    pub expired: u64,
    /// Waiting deliveries (held ones too) of disabled or deleted webhooks
    /// cancelled.
    pub orphans: u64,
    /// Held deliveries promoted because nothing held their key back.
    pub rescued: u64,
}

pub struct Reaper {
    pub pool: Pool,
    pub interval: Duration,
    /// Notified when leases were put back: deliveries are due.
    pub deliveries_ready: Arc<Notify>,
}

impl Reaper {
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every::every(self.interval, &shutdown, || self.round()).await;
    }

    async fn round(&self) {
        match self.run_once().await {
            Ok(r) => {
                if r.expired > 0 {
                    tracing::info!(
                        deliveries = r.expired,
                        "expired leases put back in the queue"
                    );
                    self.deliveries_ready.notify_one();
                }
                if r.rescued > 0 {
                    tracing::info!(
                        deliveries = r.rescued,
                        "held deliveries whose ordering key nothing held back made pending"
                    );
                    self.deliveries_ready.notify_one();
                }
                if r.orphans > 0 {
                    tracing::info!(
                        deliveries = r.orphans,
                        "waiting deliveries of disabled or deleted webhooks cancelled"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "reaping expired leases failed"),
        }
    }

    /// One round: expired leases, orphans, then stuck keys.
    pub async fn run_once(&self) -> Result<Reaped, Error> {
        let client = self.pool.get().await?;
        let expired = client.execute(REAP, &[]).await?;
        let orphans = client.execute(CANCEL_ORPHANS, &[]).await?
            + client.execute(CANCEL_HELD_ORPHANS, &[]).await?;
        let rescued = client.query_one(RESCUE_KEYS, &[]).await?.get::<_, i64>(0) as u64;
        Ok(Reaped {
            expired,
            orphans,
            rescued,
        })
    }
}
