//! The webhooks and events runs set up, and how they wait: for the receiver
//! to count what they expect, and for the daemon to write every result back.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::daemon::Daemon;
use crate::receiver::Tally;

/// Replaces the webhooks with `n` subscribed to everything at the receiver.
pub async fn set_webhooks(db: &Client, url: &str, n: i64) -> Result<()> {
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    db.execute(
        "INSERT INTO outbox.webhooks (name, url, event_types)
         SELECT 'bench ' || i, $1, '{*}' FROM generate_series(1, $2::int8) AS i",
        &[&url, &n],
    )
    .await?;
    // The daemon reloads its cache on the change notification.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Replaces the webhooks with `n` at `url`, each subscribed to its own
/// `t<i>.*`, and `others` more after them (`t<n+1>.*` on) at `other_url`.
pub async fn set_own_webhooks(
    db: &Client,
    url: &str,
    n: i64,
    others: i64,
    other_url: &str,
) -> Result<()> {
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    db.execute(
        "INSERT INTO outbox.webhooks (name, url, event_types)
         SELECT 'bench ' || i, CASE WHEN i <= $2 THEN $1 ELSE $4 END, ARRAY['t' || i || '.*']
           FROM generate_series(1, $2::int8 + $3::int8) AS i",
        &[&url, &n, &others, &other_url],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// A URL at a port nothing listens on: connections are refused.
pub fn refused_url() -> Result<String> {
    Ok(format!("http://127.0.0.1:{}/dead", closed_port()?))
}

/// A port nothing listens on.
pub fn closed_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Cancels what is still waiting (the dead webhooks' deliveries), so the
/// next run starts empty.
pub async fn cancel_open(db: &Client) -> Result<()> {
    // The daemon's writer updates the same rows in its own order: a
    // deadlock aborts one of the two, and this one tries again.
    let mut attempt = 1;
    loop {
        match db
            .batch_execute(
                "UPDATE outbox.deliveries SET state = 'cancelled', locked_until = NULL
                  WHERE state IN ('pending', 'in_flight')",
            )
            .await
        {
            Err(e) if attempt < 5 && e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                attempt += 1
            }
            done => return Ok(done?),
        }
    }
}

/// Inserts `events` events spread evenly over the types `t1.*` to
/// `t<spread>.*` and waits until the receiver has the deliveries of the
/// first `counted` of them. Returns (deliveries/s of those, seconds).
pub async fn drain_spread(
    db: &Client,
    tally: &Tally,
    daemon: &mut Daemon,
    events: i64,
    spread: i64,
    counted: i64,
) -> Result<(f64, f64)> {
    let expected = events / spread * counted + (events % spread).min(counted);
    let want = tally.count.load(Ordering::Relaxed) + expected as u64;
    db.execute(
        "INSERT INTO outbox.events (event_type, payload)
         SELECT 't' || (i % $2::int8 + 1) || '.created', jsonb_build_object('n', i, 'amount', 4200)
           FROM generate_series(0, $1::int8 - 1) AS i",
        &[&events, &spread],
    )
    .await?;
    let start = Instant::now();
    wait_for_tally(tally, daemon, want, start).await?;
    let secs = start.elapsed().as_secs_f64();
    if counted == spread {
        wait_drained(db).await?;
    }
    Ok((expected as f64 / secs, secs))
}

/// Vacuums and analyzes the outbox's tables, so that a run starts without
/// the dead rows of the run before it and without an autovacuum of them
/// competing with it for the machine's cores.
pub async fn vacuum_outbox(db: &Client) -> Result<()> {
    // One statement per call: several in one batch form a transaction
    // block, where VACUUM cannot run.
    for table in ["events", "deliveries", "delivery_attempts"] {
        db.batch_execute(&format!("VACUUM ANALYZE outbox.{table}"))
            .await?;
    }
    Ok(())
}

/// Waits until the receiver has answered `want` requests in all.
pub async fn wait_for_tally(
    tally: &Tally,
    daemon: &mut Daemon,
    want: u64,
    start: Instant,
) -> Result<()> {
    let deadline = start + Duration::from_secs(600);
    while tally.count.load(Ordering::Relaxed) < want {
        if Instant::now() > deadline {
            bail!("drain did not finish in 10 minutes");
        }
        daemon.check_alive("the drain")?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Inserts `events` events in one transaction and waits until the receiver
/// has `events * webhooks` more requests. Returns (deliveries/s, seconds).
pub async fn drain(
    db: &Client,
    tally: &Tally,
    daemon: &mut Daemon,
    events: i64,
    webhooks: i64,
) -> Result<(f64, f64)> {
    let want = tally.count.load(Ordering::Relaxed) + (events * webhooks) as u64;
    db.execute(
        "INSERT INTO outbox.events (event_type, payload)
         SELECT 'bench.event', jsonb_build_object('n', i, 'amount', 4200, 'currency', 'EUR')
           FROM generate_series(1, $1::int8) AS i",
        &[&events],
    )
    .await?;
    let start = Instant::now();
    wait_for_tally(tally, daemon, want, start).await?;
    let secs = start.elapsed().as_secs_f64();
    wait_drained(db).await?;
    Ok(((events * webhooks) as f64 / secs, secs))
}

/// Waits until the daemon has also written every result back.
pub async fn wait_drained(db: &Client) -> Result<()> {
    for _ in 0..6000 {
        let open: i64 = db
            .query_one(
                "SELECT (SELECT count(*) FROM outbox.deliveries WHERE state IN ('pending', 'in_flight'))
                      + (SELECT count(*) FROM outbox.undispatched_events)",
                &[],
            )
            .await?
            .get(0);
        if open == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("deliveries still open after 10 minutes")
}
