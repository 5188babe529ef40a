//! `insert`: what the host application pays to write into `outbox.events`,
//! against a plain table of the same shape, the two taking turns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench::{connect, Bench};
use crate::fixture::{set_webhooks, wait_drained};
use crate::table::Row;

/// Runs of the plain and the outbox table in the host insert measure.
const INSERT_ROUNDS: usize = 3;

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let seconds = b.args.insert_seconds;
    // No webhook: the daemon only reads the events, so this is the cost
    // of the insert path itself (trigger, checks, the fan-out's reads).
    // The two tables take turns, so that the machine's drift (tens of
    // percent from one minute to the next, here) falls on both alike.
    set_webhooks(&b.db, &b.url(), 0).await?;
    let (mut plain, mut outbox) = (0.0, 0.0);
    for _ in 0..INSERT_ROUNDS {
        plain += inserts(&b.db_url, "bench.plain", seconds).await?;
        outbox += inserts(&b.db_url, "outbox.events", seconds).await?;
    }
    plain /= INSERT_ROUNDS as f64;
    outbox /= INSERT_ROUNDS as f64;
    // One webhook: the same two cores also deliver every event.
    set_webhooks(&b.db, &b.url(), 1).await?;
    let delivering = inserts(&b.db_url, "outbox.events", seconds).await?;
    let rows = vec![
        Row::new(
            "host inserts, plain table",
            format!("{plain:.0} tx/s"),
            format!(
                "8 clients, single-row insert transactions; {INSERT_ROUNDS} runs of each table, taking turns"
            ),
        ),
        Row::new(
            "host inserts, outbox.events",
            format!("{outbox:.0} tx/s ({:.0}% of plain)", 100.0 * outbox / plain),
            "same, daemon running, no webhook subscribed",
        ),
        Row::new(
            "host inserts, outbox.events, delivered",
            format!(
                "{delivering:.0} tx/s ({:.0}% of plain)",
                100.0 * delivering / plain
            ),
            "same, daemon delivering each event to a webhook on the same cores",
        ),
    ];
    // Let the daemon deliver what the insert run published.
    wait_drained(&b.db).await?;
    Ok(rows)
}

/// 8 clients inserting single-row transactions into `table` for `seconds`;
/// returns transactions per second.
async fn inserts(db_url: &str, table: &str, seconds: u64) -> Result<f64> {
    let setup = connect(db_url).await?;
    // The same columns and indexes as outbox.events, without its CHECKs and
    // its trigger: what the application would pay writing a table of its own.
    setup
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS bench;
             CREATE TABLE IF NOT EXISTS bench.plain (
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 event_type text NOT NULL,
                 payload jsonb NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 idempotency_key text UNIQUE,
                 target_webhook_id bigint,
                 dispatched_at timestamptz,
                 is_test boolean NOT NULL DEFAULT false,
                 xid xid8 DEFAULT pg_current_xact_id());
             CREATE INDEX IF NOT EXISTS plain_stream ON bench.plain (xid, id) WHERE xid IS NOT NULL;",
        )
        .await?;
    let stop = Instant::now() + Duration::from_secs(seconds);
    let total = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let client = connect(db_url).await?;
        let total = total.clone();
        let sql = format!(
            "INSERT INTO {table} (event_type, payload) VALUES ('bench.insert', '{{\"amount\": 4200}}')"
        );
        clients.push(tokio::spawn(async move {
            let stmt = client.prepare(&sql).await?;
            while Instant::now() < stop {
                client.execute(&stmt, &[]).await?;
                total.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for c in clients {
        c.await??;
    }
    Ok(total.load(Ordering::Relaxed) as f64 / seconds as f64)
}
