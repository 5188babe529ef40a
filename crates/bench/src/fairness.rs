//! `fairness`: tenant A's backlog at an endpoint that answers in 20 ms,
//! beside tenant B's webhook receiving a steady trickle: B's latency from
//! commit to receipt.
//!
//! Two places A's backlog can sit, measured apart: already fanned out as
//! pending deliveries (the claims must not make B wait), and still in
//! `outbox.events`, committed ahead of B's events in the stream (the
//! fan-out must get past it); and B alone first, the machine's own figure.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use tokio_postgres::Client;

use crate::bench::{connect, Bench};
use crate::latency::commit_to_receipt_ms;
use crate::table::{summary, Row};

/// How slowly A's endpoint answers.
const A_DELAY: Duration = Duration::from_millis(20);

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let backlog = b.args.fairness_backlog;
    let mut rows = Vec::new();
    for place in [Place::Alone, Place::FannedOut, Place::InStream] {
        let backlog = if place == Place::Alone { 0 } else { backlog };
        let m = measure(b, backlog, place == Place::InStream).await?;
        let (p50, p99, max) = m.b_ms;
        let place = match place {
            Place::Alone => "no backlog of A",
            Place::FannedOut => "A's backlog fanned out already, pending",
            Place::InStream => "A's backlog still in outbox.events, committed just before B's",
        };
        rows.push(Row::new(
            format!("fairness: B at {} events/s, {place}", b.args.fairness_rate),
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
            format!(
                "{} of B's events (p99 {:.2} ms to their fan-out, {:.2} ms from there to the request); A: {backlog} events at {} ms each, fanned out in {:.2} s, {} delivered meanwhile",
                m.b_events,
                m.stages.0,
                m.stages.1,
                A_DELAY.as_millis(),
                m.fanned_out_after.as_secs_f64(),
                m.a_delivered
            ),
        ));
    }
    Ok(rows)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Alone,
    FannedOut,
    InStream,
}

struct Measured {
    b_ms: (f64, f64, f64),
    b_events: usize,
    /// From A's commit until none of its events waited for the fan-out.
    fanned_out_after: Duration,
    a_delivered: u64,
    /// p99 of B's wait for its fan-out and of the fan-out to the request.
    stages: (f64, f64),
}

async fn measure(b: &mut Bench<'_>, backlog: i64, in_stream: bool) -> Result<Measured> {
    let db = &b.db;
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    db.execute(
        "INSERT INTO outbox.webhooks (name, url, event_types, tenant)
         VALUES ('tenant a', $1, '{a.*}', 'a'), ('tenant b', $2, '{b.*}', 'b')",
        &[&b.receiver.slow_url(A_DELAY), &b.url()],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    *b.tally.arrivals.lock().unwrap() = Some(HashMap::new());
    let count0 = b.tally.count.load(Ordering::Relaxed);

    let t0 = Instant::now();
    // A's events are one transaction's, so the fan-out takes them in id
    // order: once the last has its delivery, all have.
    let last_a: Option<i64> = db
        .query_one(
            "WITH a AS (
                 INSERT INTO outbox.events (event_type, payload, tenant)
                 SELECT 'a.created', jsonb_build_object('n', i, 'amount', 4200), 'a'
                   FROM generate_series(1, $1::int8) AS i
                 RETURNING id)
             SELECT max(id) FROM a",
            &[&backlog],
        )
        .await?
        .get(0);
    let mut fanned_out_after = None;
    if !in_stream {
        wait_fanned_out(db, last_a).await?;
        fanned_out_after = Some(t0.elapsed());
    }

    // B publishes from a connection of its own while this one watches the
    // fan-out get through A's events.
    let b_db = connect(&b.db_url).await?;
    let (rate, seconds) = (b.args.fairness_rate, b.args.fairness_seconds);
    let publisher = tokio::spawn(async move { publish_b(&b_db, rate, seconds).await });
    while fanned_out_after.is_none() && !publisher.is_finished() {
        if fanned_out(db, last_a).await? {
            fanned_out_after = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let committed = publisher.await??;
    let fanned_out_after = match fanned_out_after {
        Some(t) => t,
        None => {
            wait_fanned_out(db, last_a).await?;
            t0.elapsed()
        }
    };
    b.daemon.check_alive("the fairness run")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let arrivals = b.tally.arrivals.lock().unwrap().take().unwrap_or_default();
    let mut ms = commit_to_receipt_ms(&committed, &arrivals);
    if ms.len() < committed.len() {
        bail!(
            "only {} of B's {} events arrived within a second of the last",
            ms.len(),
            committed.len()
        );
    }
    let a_delivered = b.tally.count.load(Ordering::Relaxed) - count0 - ms.len() as u64;
    let stages = b_stages(db).await?;
    // A's backlog is not waited for: its deliveries are cancelled, and its
    // webhook goes so that what the daemon holds of it is dropped.
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    crate::fixture::cancel_open(db).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(Measured {
        b_ms: summary(&mut ms),
        b_events: committed.len(),
        fanned_out_after,
        a_delivered,
        stages,
    })
}

/// Where B's time went, p99 of each stage in ms: from the event's insert
/// to the start of its fan-out's transaction, and from there to the
/// request's start (the fan-out's round, the hand-over, the wait for a
/// slot). The rest, to the receipt, is the request itself.
async fn b_stages(db: &Client) -> Result<(f64, f64)> {
    let row = db
        .query_one(
            "SELECT percentile_disc(0.99) WITHIN GROUP
                        (ORDER BY extract(epoch FROM d.created_at - e.created_at) * 1000)::float8,
                    percentile_disc(0.99) WITHIN GROUP
                        (ORDER BY extract(epoch FROM a.started_at - d.created_at) * 1000)::float8
               FROM outbox.deliveries d
               JOIN outbox.events e ON e.id = d.event_id
               JOIN outbox.delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1
               JOIN outbox.webhooks w ON w.id = d.webhook_id
              WHERE w.tenant = 'b'",
            &[],
        )
        .await?;
    let ms =
        |i: usize| -> Result<f64> { Ok(row.try_get::<_, Option<f64>>(i)?.unwrap_or(f64::NAN)) };
    Ok((ms(0)?, ms(1)?))
}

/// Tenant B's events, one per transaction at `rate` a second; when each
/// committed.
async fn publish_b(db: &Client, rate: u64, seconds: u64) -> Result<HashMap<i64, SystemTime>> {
    let stmt = db
        .prepare(
            "INSERT INTO outbox.events (event_type, payload, tenant)
             VALUES ('b.created', '{\"x\": 1}', 'b') RETURNING id",
        )
        .await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1) as u32);
    let mut committed = HashMap::new();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let id: i64 = db.query_one(&stmt, &[]).await?.get(0);
        committed.insert(id, SystemTime::now());
    }
    Ok(committed)
}

/// Whether A's last event has its delivery. One index probe: the view of
/// events waiting for the fan-out reads the stream, and polled every 20 ms
/// it would take a core from the run it measures.
async fn fanned_out(db: &Client, last_a: Option<i64>) -> Result<bool> {
    let Some(last_a) = last_a else {
        return Ok(true);
    };
    Ok(db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM outbox.deliveries WHERE event_id = $1)",
            &[&last_a],
        )
        .await?
        .get(0))
}

async fn wait_fanned_out(db: &Client, last_a: Option<i64>) -> Result<()> {
    for _ in 0..3000 {
        if fanned_out(db, last_a).await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("A's events were not fanned out in a minute")
}
