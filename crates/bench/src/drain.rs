//! Drain runs: how fast the daemon empties a backlog to one webhook
//! (`drain`), to ten (`fanout`), and to one with a long history of
//! finished deliveries in the tables (`history`).

use std::time::Instant;

use anyhow::Result;
use tokio_postgres::Client;

use crate::bench::Bench;
use crate::fixture::{drain as drain_events, set_webhooks, vacuum_outbox};
use crate::table::Row;

pub async fn drain(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    set_webhooks(&b.db, &b.url(), 1).await?;
    let cpu0 = b.daemon.cpu_seconds()?;
    let (rate, secs) = drain_events(&b.db, &b.tally, &mut b.daemon, b.args.events, 1).await?;
    let cpu = b.daemon.cpu_seconds()? - cpu0;
    Ok(vec![Row::new(
        "drain, 1 webhook",
        format!("{rate:.0} deliveries/s"),
        format!(
            "{} deliveries in {secs:.2} s; daemon CPU {cpu:.1} s",
            b.args.events
        ),
    )])
}

pub async fn fanout(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    set_webhooks(&b.db, &b.url(), 10).await?;
    let events = b.args.events / 10;
    let (rate, secs) = drain_events(&b.db, &b.tally, &mut b.daemon, events, 10).await?;
    Ok(vec![Row::new(
        "fan-out, 10 webhooks",
        format!("{rate:.0} deliveries/s"),
        format!("{events} events x 10 webhooks in {secs:.2} s"),
    )])
}

pub async fn history(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    if b.args.history <= 0 {
        return Ok(Vec::new());
    }
    set_webhooks(&b.db, &b.url(), 1).await?;
    add_history(&b.db, b.args.history).await?;
    let (rate, secs) = drain_events(&b.db, &b.tally, &mut b.daemon, b.args.events, 1).await?;
    Ok(vec![Row::new(
        format!(
            "drain, 1 webhook, {} finished deliveries in the tables",
            b.args.history
        ),
        format!("{rate:.0} deliveries/s"),
        format!("{} deliveries in {secs:.2} s", b.args.events),
    )])
}

/// Fills the tables with `n` finished deliveries (and their events and
/// attempts), as a long-running installation would have.
async fn add_history(db: &Client, n: i64) -> Result<()> {
    let t = Instant::now();
    db.batch_execute("SET synchronous_commit = off").await?;
    db.execute(
        "INSERT INTO outbox.events (event_type, payload, dispatched_at, created_at)
         SELECT 'bench.history', '{\"old\": true}', now() - interval '1 day', now() - interval '1 day'
           FROM generate_series(1, $1::int8)",
        &[&n],
    )
    .await?;
    db.execute(
        "INSERT INTO outbox.deliveries (event_id, webhook_id, state, attempts, delivered_at, created_at)
         SELECT e.id, (SELECT min(id) FROM outbox.webhooks), 'delivered', 1, e.created_at, e.created_at
           FROM outbox.events e WHERE e.event_type = 'bench.history'",
        &[],
    )
    .await?;
    db.execute(
        "INSERT INTO outbox.delivery_attempts (delivery_id, event_id, webhook_id, attempt, started_at, duration_ms, status_code, outcome)
         SELECT d.id, d.event_id, d.webhook_id, 1, d.created_at, 1.0, 204, 'delivered'
           FROM outbox.deliveries d JOIN outbox.events e ON e.id = d.event_id
          WHERE e.event_type = 'bench.history'",
        &[],
    )
    .await?;
    vacuum_outbox(db).await?;
    println!(
        "history: {n} finished deliveries added in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
