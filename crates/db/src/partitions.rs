//! The partition keeper: creates the delivery log's time partitions ahead
//! of time and drops those older than the retention (sql/V14,
//! `outbox.keep_attempt_partitions`).
//!
//! A maintenance service beside the janitor and the reaper. Retiring a day
//! of attempts is dropping one table, not deleting its rows: no write load,
//! no bloat. The function runs one replica at a time under an advisory
//! lock, and a detach that would wait for a lock is left for the next round.

use std::time::Duration;

use outboxd_core::partitions;
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool};

const KEEP: &str = "
SELECT created, retired
  FROM outbox.keep_attempt_partitions(make_interval(secs => $1), make_interval(secs => $2),
                                      make_interval(secs => $3))";

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub created: i32,
    pub retired: i32,
}

pub struct PartitionKeeper {
    pub pool: Pool,
    /// Attempts older than this go (with their partition).
    pub retention: Duration,
    /// Time between two rounds.
    pub interval: Duration,
}

impl PartitionKeeper {
    /// A round at start (so partitions exist before the first attempt),
    /// then every `interval`.
    pub async fn run(self, shutdown: CancellationToken) {
        crate::every::every(self.interval, &shutdown, || self.round()).await;
    }

    async fn round(&self) {
        match self.run_once().await {
            Ok(k) if k.created + k.retired > 0 => tracing::info!(
                created = k.created,
                retired = k.retired,
                "delivery log partitions created ahead and retired"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, retry_in = ?self.interval,
                "keeping the delivery log's partitions failed"),
        }
    }

    pub async fn run_once(&self) -> Result<Kept, Error> {
        let width = partitions::width(self.retention).as_secs_f64();
        let ahead = partitions::ahead(self.retention, self.interval).as_secs_f64();
        let retention = self.retention.as_secs_f64();
        let client = self.pool.get().await?;
        let row = client
            .query_one(KEEP, &[&width, &ahead, &retention])
            .await?;
        Ok(Kept {
            created: row.get(0),
            retired: row.get(1),
        })
    }
}
