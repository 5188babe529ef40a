//! Gauges that need a query, sampled on an interval rather than per scrape,
//! each answered from an index that skips the history (the backlog of events
//! from `outbox.undispatched_events`, sql/V8), so the cost follows the
//! backlog, not the tables' size.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Pool;

const SAMPLE: &str = "
SELECT b.n, b.age,
       (SELECT count(*) FROM outbox.deliveries WHERE state = 'pending'),
       (SELECT extract(epoch FROM now() - min(created_at))::float8
          FROM outbox.deliveries WHERE state = 'pending'),
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
                metrics::gauge!("outboxd_database_up").set(1.0);
                metrics::gauge!("outboxd_events_pending").set(row.get::<_, i64>(0) as f64);
                metrics::gauge!("outboxd_oldest_pending_event_age_seconds")
                    .set(row.get::<_, Option<f64>>(1).unwrap_or(0.0).max(0.0));
                metrics::gauge!("outboxd_deliveries_pending").set(row.get::<_, i64>(2) as f64);
                metrics::gauge!("outboxd_oldest_pending_delivery_age_seconds")
                    .set(row.get::<_, Option<f64>>(3).unwrap_or(0.0).max(0.0));
                metrics::gauge!("outboxd_webhooks_disabled").set(row.get::<_, i64>(4) as f64);
            }
            Err(e) => {
                metrics::gauge!("outboxd_database_up").set(0.0);
                tracing::debug!(error = %e, "sampling gauges failed");
            }
        }
    }
}
