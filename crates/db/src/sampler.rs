//! Gauges that need a query, sampled on an interval rather than per scrape,
//! each answered from an index that skips the history (the backlog of events
//! from `outbox.undispatched_events`, migrations/V8), so the cost follows the
//! backlog, not the tables' size. A paused webhook's deferred events (V29)
//! count as its pending deliveries.

use std::time::Duration;

use outboxd_metrics as names;
use tokio_util::sync::CancellationToken;

use crate::Pool;

const SAMPLE: &str = "
SELECT b.n, b.age,
       (SELECT count(*) FROM outbox.deliveries WHERE state = 'pending')
         + (SELECT count(*) FROM outbox.deliveries
             WHERE state = 'held' AND ordering_key IS NOT NULL)
         + (SELECT coalesce(sum(cardinality(event_ids)), 0) FROM outbox.deferred_deliveries)::int8,
       (SELECT extract(epoch FROM now() - least(
                  (SELECT min(created_at) FROM outbox.deliveries WHERE state = 'pending'),
                  (SELECT min(created_at) FROM outbox.deliveries
                    WHERE state = 'held' AND ordering_key IS NOT NULL),
                  (SELECT min(created_at) FROM outbox.deferred_deliveries)))::float8),
       (SELECT count(*) FROM outbox.webhooks WHERE NOT enabled)
  FROM (SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
          FROM outbox.undispatched_events) AS b";

const SCANS_ALLOWED: &str = "SET LOCAL enable_seqscan = on; SET LOCAL enable_bitmapscan = on";

pub struct Sampler {
    pub pool: Pool,
    pub interval: Duration,
}

impl Sampler {
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every::every(self.interval, &shutdown, || self.sample()).await;
    }

    async fn sample(&self) {
        let row = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            // Counting a large backlog is a scan: let the planner choose one
            // (the daemon's sessions otherwise steer to index paths, see
            // `connect::daemon_session`).
            tx.batch_execute(SCANS_ALLOWED).await?;
            let row = tx.query_one(SAMPLE, &[]).await?;
            tx.commit().await?;
            Ok::<_, crate::Error>(row)
        }
        .await;
        match row {
            Ok(row) => {
                metrics::gauge!(names::DATABASE_UP).set(1.0);
                metrics::gauge!(names::EVENTS_PENDING).set(row.get::<_, i64>(0) as f64);
                metrics::gauge!(names::OLDEST_PENDING_EVENT_AGE)
                    .set(row.get::<_, Option<f64>>(1).unwrap_or(0.0).max(0.0));
                metrics::gauge!(names::DELIVERIES_PENDING).set(row.get::<_, i64>(2) as f64);
                metrics::gauge!(names::OLDEST_PENDING_DELIVERY_AGE)
                    .set(row.get::<_, Option<f64>>(3).unwrap_or(0.0).max(0.0));
                metrics::gauge!(names::WEBHOOKS_DISABLED).set(row.get::<_, i64>(4) as f64);
            }
            Err(e) => {
                metrics::gauge!(names::DATABASE_UP).set(0.0);
                tracing::debug!(error = %e, "sampling gauges failed");
            }
        }
    }
}
