//! The result writer: attempt outcomes go back to the database in batches.
//!
//! Send tasks finish one by one; the writer takes whatever has accumulated
//! while its previous write ran and writes it as one statement, so the write
//! rate adapts to the load. If the database is away it retries the same
//! batch with backoff (at most a second apart, the last try at the deadline)
//! for as long as the leases could still be valid; after that the leases
//! have expired, the deliveries will be claimed again, and the batch is
//! dropped with a warning (at-least-once, never lost).

use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_core::outcome::Outcome;
use outboxd_db::{results, AttemptRecord, Handoff, Pool};
use outboxd_metrics as names;
use tokio::sync::{mpsc, Notify};

/// The most results written in one statement.
const MAX_BATCH: usize = 2000;

/// Backoff between tries of one batch. Short at most: once the database is
/// back, the results should land before the leases are reaped.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(1);

pub struct ResultWriter {
    pub pool: Pool,
    pub results: mpsc::Receiver<AttemptRecord>,
    /// How long a result can still matter: the lease length.
    pub lease: Duration,
    /// Notified when a result promoted held deliveries `pending`: the next
    /// of their keys is due now, and the loop claims it without waiting for
    /// a poll.
    pub ready: Arc<Notify>,
    /// Where promoted deliveries go already claimed, as far as the loop
    /// has room for their webhook (`results::record_handing_over`).
    pub handoff: Option<Handoff>,
}

impl ResultWriter {
    /// Runs until every sender is gone and everything received is written.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.results.recv_many(&mut batch, MAX_BATCH).await > 0 {
            self.write(&batch).await;
            batch.clear();
        }
    }

    async fn write(&self, batch: &[AttemptRecord]) {
        let give_up = Instant::now() + self.lease;
        let mut delay = FIRST_RETRY;
        loop {
            match results::record_handing_over(&self.pool, batch, self.handoff.as_ref()).await {
                Ok(recorded) => {
                    if recorded.promoted > recorded.handed {
                        self.ready.notify_one();
                    }
                    observe(batch, &recorded);
                    return;
                }
                Err(e) => {
                    metrics::counter!(names::DATABASE_ERRORS).increment(1);
                    // The last try comes at the deadline, not a backoff step
                    // before it: every result written is a request not sent
                    // again.
                    let left = give_up.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(error = %e, results = batch.len(),
                            "could not write delivery results before their leases expired; those deliveries will be sent again");
                        return;
                    }
                    let wait = delay.min(left);
                    tracing::warn!(error = %e, results = batch.len(), retry_in = ?wait,
                        "writing delivery results failed; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

/// Counts what was accepted, and says what was not.
fn observe(batch: &[AttemptRecord], recorded: &results::Recorded) {
    let fenced = batch.len() - recorded.accepted.len();
    if fenced > 0 {
        metrics::counter!(names::RESULTS_FENCED).increment(fenced as u64);
        tracing::info!(
            results = fenced,
            "results arrived after their lease expired and were ignored"
        );
    }
    let accepted: std::collections::HashSet<i64> = recorded.accepted.iter().copied().collect();
    let (mut delivered, mut retry, mut failed) = (0u64, 0u64, 0u64);
    for r in batch.iter().filter(|r| accepted.contains(&r.delivery_id)) {
        match r.outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Retry => retry += 1,
            Outcome::Failed => failed += 1,
        }
    }
    for (outcome, n) in [
        (Outcome::Delivered, delivered),
        (Outcome::Retry, retry),
        (Outcome::Failed, failed),
    ] {
        if n > 0 {
            metrics::counter!(names::DELIVERIES, "outcome" => outcome.as_str()).increment(n);
        }
    }
    for id in &recorded.disabled {
        metrics::counter!(names::WEBHOOKS_DISABLED_TOTAL).increment(1);
        tracing::warn!(
            webhook_id = id,
            "webhook disabled: the endpoint answered 410 Gone"
        );
    }
}
