//! `rate`: one webhook limited to `--rate-limit`, two daemons delivering to
//! it, a backlog longer than the run: the rate the receiver gets.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::bench::Bench;
use crate::daemon::Daemon;
use crate::fixture::{set_webhooks, wait_drained};
use crate::table::Row;

/// Seconds the rate run counts over.
const RATE_SECONDS: u64 = 10;

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let (achieved, limit) = rate_limited(b).await?;
    Ok(vec![Row::new(
        "rate-limited webhook, 2 daemons",
        format!(
            "{achieved:.1} requests/s ({:.1}% of the limit)",
            100.0 * achieved / f64::from(limit)
        ),
        format!(
            "limit {limit}/s, a backlog all along, counted at the receiver over {RATE_SECONDS} s"
        ),
    )])
}

/// The requests a second the receiver gets, counted from one second after
/// the first (past the bucket's burst).
async fn rate_limited(b: &mut Bench<'_>) -> Result<(f64, i32)> {
    let (db, tally) = (&b.db, &b.tally);
    let limit = b.args.rate_limit;
    let receiver_url = b.url();
    set_webhooks(db, &receiver_url, 0).await?;
    let mut second = Daemon::start(&b.binary, &b.db_url, &b.args.daemon_env)?;
    db.execute(
        "INSERT INTO outbox.webhooks (name, url, event_types, rate_limit)
         VALUES ('bench limited', $1, '{*}', $2)",
        &[&receiver_url, &limit],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = i64::from(limit) * (RATE_SECONDS as i64 + 5);
    let start_count = tally.count.load(Ordering::Relaxed);
    db.execute(
        "INSERT INTO outbox.events (event_type, payload)
         SELECT 'bench.event', jsonb_build_object('n', i) FROM generate_series(1, $1::int8) AS i",
        &[&events],
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.count.load(Ordering::Relaxed) == start_count {
        if Instant::now() > deadline {
            bail!("the rate-limited webhook got nothing in a minute");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = tally.count.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(RATE_SECONDS)).await;
    let got = tally.count.load(Ordering::Relaxed) - from;
    let achieved = got as f64 / t.elapsed().as_secs_f64();
    // The rest of the backlog is not waited for.
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    second.stop().await;
    wait_drained(db).await?;
    Ok((achieved, limit))
}
