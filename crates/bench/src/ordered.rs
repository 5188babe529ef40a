//! The `ordered` run: one webhook delivering 1,000 ordering keys (or
//! `--ordering-keys`) in order
//! against the same webhook unordered, taking turns, and one key alone,
//! whose events can only go one after another: how many a second, against
//! the round trips each one needs (the request, the result written with
//! the next promoted, the claim) and the daemon's poll interval, which an
//! ordered key must never wait for.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio_postgres::Client;

use crate::daemon::Daemon;
use crate::fixture::{set_webhooks, vacuum_outbox, wait_for_tally};
use crate::receiver::Tally;
use crate::table::{median, thousands, Row};
use crate::Args;

/// Events of the one-key side: enough to average, few enough to stay short
/// as they go one at a time.
const ONE_KEY_EVENTS: i64 = 2_000;

/// Makes the one webhook ordered or not; the daemon's cache follows the
/// change notification.
async fn set_ordered(db: &Client, ordered: bool) -> Result<()> {
    db.execute("UPDATE outbox.webhooks SET ordered = $1", &[&ordered])
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// Publishes `events` in one transaction, spread over `keys` ordering keys
/// (event i has key i mod keys), and waits until the receiver has them
/// all and the results are written. Returns deliveries per second.
async fn drain_keyed(
    db: &Client,
    tally: &Tally,
    daemon: &mut Daemon,
    events: i64,
    keys: i64,
) -> Result<f64> {
    let want = tally.count.load(std::sync::atomic::Ordering::Relaxed) + events as u64;
    db.execute(
        "INSERT INTO outbox.events (event_type, payload, ordering_key)
         SELECT 'bench.event', jsonb_build_object('n', i, 'amount', 4200), 'k' || (i % $2::int8)
           FROM generate_series(0, $1::int8 - 1) AS i",
        &[&events, &keys],
    )
    .await?;
    let start = Instant::now();
    wait_for_tally(tally, daemon, want, start).await?;
    let rate = events as f64 / start.elapsed().as_secs_f64();
    for _ in 0..6000 {
        let open: i64 = db
            .query_one(
                "SELECT count(*) FROM outbox.deliveries WHERE state IN ('pending', 'in_flight', 'held')",
                &[],
            )
            .await?
            .get(0);
        if open == 0 {
            return Ok(rate);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("ordered deliveries still open after 10 minutes")
}

/// The median time of a trivial query from here: one database round trip.
async fn round_trip_ms(db: &Client) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        db.query_one("SELECT 1", &[]).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&times))
}

pub async fn run(
    db: &Client,
    tally: &Tally,
    daemon: &mut Daemon,
    receiver_url: &str,
    args: &Args,
) -> Result<Vec<Row>> {
    set_webhooks(db, receiver_url, 1).await?;
    let (mut unordered, mut ordered) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for side in [false, true] {
            // Each side starts clean: otherwise the second one runs amid
            // the first one's dead rows and their autovacuum.
            vacuum_outbox(db).await?;
            set_ordered(db, side).await?;
            let rate = drain_keyed(db, tally, daemon, args.events, args.ordering_keys).await?;
            if side { &mut ordered } else { &mut unordered }.push(rate);
        }
    }
    let (u, o) = (median(&unordered), median(&ordered));
    let keys = thousands(args.ordering_keys);
    set_ordered(db, true).await?;
    let one = drain_keyed(db, tally, daemon, ONE_KEY_EVENTS, 1).await?;
    let rtt = round_trip_ms(db).await?;
    let poll_ms = args
        .daemon_env
        .iter()
        .find_map(|kv| kv.strip_prefix("OUTBOXD_POLL_INTERVAL="))
        .map(|v| v.to_owned())
        .unwrap_or_else(|| "1s".into());
    Ok(vec![
        Row {
            name: format!("unordered, {keys} keys"),
            value: format!("{u:.0} deliveries/s"),
            note: format!(
                "{} events; median of {} runs, taking turns with ordered",
                args.events, args.rounds
            ),
        },
        Row {
            name: format!("ordered, {keys} keys"),
            value: format!("{o:.0} deliveries/s ({:.0}% of unordered)", 100.0 * o / u),
            note: format!(
                "same webhook, `ordered` on; runs (each against the unordered run before it): {}",
                ordered
                    .iter()
                    .zip(&unordered)
                    .map(|(o, u)| format!("{o:.0} ({:.0}%)", 100.0 * o / u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        Row {
            name: "ordered, 1 key".into(),
            value: format!("{one:.0} requests/s ({:.2} ms each)", 1000.0 / one),
            note: format!(
                "{ONE_KEY_EVENTS} events one after another; a database round trip is {rtt:.2} ms here, the poll interval {poll_ms}"
            ),
        },
    ])
}
