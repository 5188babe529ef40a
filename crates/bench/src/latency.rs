//! `latency`: events published one per transaction at 100 a second into an
//! idle daemon, timed from commit to receipt.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use tokio_postgres::Client;

use crate::bench::Bench;
use crate::daemon::wait_ready;
use crate::fixture::set_webhooks;
use crate::receiver::Tally;
use crate::table::{summary, Row};

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    set_webhooks(&b.db, &b.url(), 1).await?;
    // Into an idle daemon, as the measure is defined: after the drains
    // it polls for a while before it asks for notifications again.
    wait_ready(&b.db).await?;
    let (p50, p99, max, n) = latency(&b.db, &b.tally, b.args.latency_seconds).await?;
    Ok(vec![Row::new(
        "latency at 100 events/s",
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
        format!("{n} events, commit to receipt"),
    )])
}

/// Publishes one event per transaction at 100/s; returns p50, p99, max (ms)
/// from commit to receipt, and how many.
async fn latency(db: &Client, tally: &Tally, seconds: u64) -> Result<(f64, f64, f64, usize)> {
    *tally.arrivals.lock().unwrap() = Some(HashMap::new());
    let mut committed = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let n = seconds * 100;
    let stmt = db
        .prepare("INSERT INTO outbox.events (event_type, payload) VALUES ('bench.latency', '{\"x\": 1}') RETURNING id")
        .await?;
    for _ in 0..n {
        tick.tick().await;
        let id: i64 = db.query_one(&stmt, &[]).await?.get(0);
        committed.insert(id, SystemTime::now());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = tally.arrivals.lock().unwrap().take().unwrap_or_default();
    let mut ms = commit_to_receipt_ms(&committed, &arrivals);
    if ms.len() < committed.len() {
        bail!(
            "only {} of {} latency events arrived",
            ms.len(),
            committed.len()
        );
    }
    let (p50, p99, max) = summary(&mut ms);
    Ok((p50, p99, max, ms.len()))
}

/// Milliseconds from each committed event's commit to its arrival, for
/// those that arrived.
pub fn commit_to_receipt_ms(
    committed: &HashMap<i64, SystemTime>,
    arrivals: &HashMap<i64, SystemTime>,
) -> Vec<f64> {
    committed
        .iter()
        .filter_map(|(id, at)| {
            let got = arrivals.get(id)?;
            Some(got.duration_since(*at).unwrap_or_default().as_secs_f64() * 1000.0)
        })
        .collect()
}
