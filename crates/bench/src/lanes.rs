//! The runs `retry-backlog` and `recovery`: fresh events beside a backlog of
//! retries, and a webhook's backlog after its circuit breaker opened.
//!
//! Both make their backlog directly in SQL (events already fanned out,
//! deliveries `pending` with attempts spent), as an outage would leave it,
//! so the run measures the daemon and not how the backlog was made. Fresh
//! events go through the whole pipeline, one per transaction.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};
use tokio::net::TcpListener;
use tokio_postgres::Client;

use crate::bench::Bench;
use crate::daemon::Daemon;
use crate::fixture::{closed_port, set_webhooks, wait_drained};
use crate::receiver::{receive, Tally};
use crate::table::Row;

/// Fresh events a second in both runs.
const FRESH_RATE: u64 = 100;

/// Makes `n` deliveries of webhook `webhook_id` waiting for a retry: their
/// events already fanned out, each delivery `pending` with `attempts` spent,
/// due at `next_attempt_at` (a SQL expression over `i`, 1 to `n`). Returns
/// the highest event id.
async fn backlog(db: &Client, webhook_id: i64, n: i64, next_attempt_at: &str) -> Result<i64> {
    let sql = format!(
        "WITH e AS (
             INSERT INTO outbox.events (event_type, payload, dispatched_at)
             SELECT 'bench.retry', jsonb_build_object('n', i, 'amount', 4200), now()
               FROM generate_series(1, $2::int8) AS i
             RETURNING id),
         n AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM e),
         d AS (
             INSERT INTO outbox.deliveries
                    (event_id, webhook_id, state, attempts, next_attempt_at, last_status)
             SELECT n.id, $1, 'pending', 1 + (n.i % 8)::int4, {next_attempt_at}, 500 FROM n
             RETURNING event_id)
         SELECT max(event_id) FROM d"
    );
    let t = Instant::now();
    let top: i64 = db.query_one(&sql, &[&webhook_id, &n]).await?.get(0);
    db.batch_execute("VACUUM ANALYZE outbox.deliveries").await?;
    println!(
        "backlog: {n} deliveries waiting for a retry made in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(top)
}

/// Publishes one event per transaction at `FRESH_RATE` a second until
/// `done` says so (checked every tick) or `most` has passed; returns each
/// event's id and commit time.
async fn publish_fresh(
    db: &Client,
    most: Duration,
    done: impl Fn() -> bool,
) -> Result<Vec<(i64, SystemTime)>> {
    let stmt = db
        .prepare("INSERT INTO outbox.events (event_type, payload) VALUES ('bench.fresh', '{\"x\": 1}') RETURNING id")
        .await?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FRESH_RATE));
    let stop = Instant::now() + most;
    let mut committed = Vec::new();
    while Instant::now() < stop && !done() {
        tick.tick().await;
        let id: i64 = db.query_one(&stmt, &[]).await?.get(0);
        committed.push((id, SystemTime::now()));
    }
    Ok(committed)
}

/// p50, p99 and max in ms, commit to receipt, of the events in `committed`
/// (all of which must have arrived).
fn percentiles(
    committed: &[(i64, SystemTime)],
    arrivals: &HashMap<i64, SystemTime>,
) -> Result<(f64, f64, f64)> {
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            let got = arrivals.get(id)?;
            Some(got.duration_since(*at).unwrap_or_default().as_secs_f64() * 1000.0)
        })
        .collect();
    if ms.len() < committed.len() || ms.is_empty() {
        bail!(
            "only {} of {} fresh events arrived",
            ms.len(),
            committed.len()
        );
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok((pct(0.50), pct(0.99), ms[ms.len() - 1]))
}

fn latency_row(name: &str, (p50, p99, max): (f64, f64, f64), note: String) -> Row {
    Row {
        name: name.into(),
        value: format!("p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"),
        note,
    }
}

/// `retry-backlog`: fresh events at 100/s to one webhook alone for
/// `seconds`, then the same while `n` deliveries of that webhook are due
/// for a retry; the fresh events' latency both times and the backlog's
/// drain rate. Returns the rows and that rate.
pub(crate) async fn retry_backlog(
    db: &Client,
    tally: &Tally,
    receiver_url: &str,
    n: i64,
    seconds: u64,
) -> Result<(Vec<Row>, f64)> {
    set_webhooks(db, receiver_url, 1).await?;
    let webhook_id: i64 = db
        .query_one("SELECT min(id) FROM outbox.webhooks", &[])
        .await?
        .get(0);
    *tally.arrivals.lock().unwrap() = Some(HashMap::new());
    let alone = publish_fresh(db, Duration::from_secs(seconds), || false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = tally.arrivals.lock().unwrap().take().unwrap_or_default();
    let alone = percentiles(&alone, &arrivals)?;

    *tally.arrivals.lock().unwrap() = Some(HashMap::new());
    let before = tally.count.load(Ordering::Relaxed);
    let top = backlog(db, webhook_id, n, "now() - interval '1 minute'").await?;
    let start = Instant::now();
    // Until the backlog has arrived (fresh events are counted apart), at
    // most ten minutes.
    let fresh_seen = || {
        tally
            .arrivals
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |a| a.keys().filter(|&&id| id > top).count())
    };
    let drained = || tally.count.load(Ordering::Relaxed) - before >= n as u64 + fresh_seen() as u64;
    let during = publish_fresh(db, Duration::from_secs(600), drained).await?;
    let drain_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_drained(db).await?;
    let arrivals = tally.arrivals.lock().unwrap().take().unwrap_or_default();
    let backlog_times: Vec<SystemTime> = arrivals
        .iter()
        .filter(|&(&id, _)| id <= top)
        .map(|(_, &at)| at)
        .collect();
    let first = backlog_times.iter().min().copied();
    let last = backlog_times.iter().max().copied();
    let rate = match (first, last) {
        (Some(a), Some(b)) if b > a => n as f64 / b.duration_since(a)?.as_secs_f64(),
        _ => n as f64 / drain_secs,
    };
    let with = percentiles(&during, &arrivals)?;
    let rows = vec![
        latency_row(
            "fresh events at 100/s, 1 webhook, no backlog",
            alone,
            format!("{seconds} s, commit to receipt"),
        ),
        latency_row(
            &format!("fresh events at 100/s beside {n} retries due"),
            with,
            format!(
                "{} fresh events while the backlog drained, commit to receipt",
                during.len()
            ),
        ),
        Row {
            name: "retry backlog drain beside fresh events".into(),
            value: format!("{rate:.0} deliveries/s"),
            note: format!("{n} retries, first to last receipt"),
        },
    ];
    Ok((rows, rate))
}

/// `recovery`: a webhook whose endpoint refuses connections gets `n`
/// deliveries waiting for retries scheduled up to six hours ahead, and a
/// few due now; once its breaker has opened (for `cooldown`, the daemon's
/// `OUTBOXD_BREAKER_COOLDOWN`) the endpoint comes back. The time from then until the
/// backlog is delivered, against the backlog over `rate` (the drain rate,
/// measured by `retry-backlog`) plus the pause.
pub(crate) async fn recovery(
    db: &Client,
    daemon: &mut Daemon,
    n: i64,
    rate: f64,
    cooldown: Duration,
) -> Result<Row> {
    let port = closed_port()?;
    let url = format!("http://127.0.0.1:{port}/hook");
    set_webhooks(db, &url, 1).await?;
    let webhook_id: i64 = db
        .query_one("SELECT min(id) FROM outbox.webhooks", &[])
        .await?
        .get(0);
    // Up to six hours ahead, as backoff leaves retries after an outage,
    // and the first 100 due now: they open the breaker.
    backlog(
        db,
        webhook_id,
        n,
        "CASE WHEN n.i <= 100 THEN now() ELSE now() + (n.i % 360) * interval '1 minute' END",
    )
    .await?;
    let opened = Instant::now();
    loop {
        let paused: i64 = db
            .query_one(
                "SELECT count(*) FROM outbox.webhook_health WHERE paused_until > now()",
                &[],
            )
            .await?
            .get(0);
        if paused > 0 {
            break;
        }
        if opened.elapsed() > Duration::from_secs(60) {
            bail!("the breaker of the refusing webhook did not open in a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let back = Instant::now();
    let back_at = SystemTime::now();
    let tally = std::sync::Arc::new(Tally::default());
    *tally.arrivals.lock().unwrap() = Some(HashMap::new());
    let receiver = tokio::spawn(receive(listener, tally.clone()));
    let expected = n as f64 / rate + cooldown.as_secs_f64();
    let most = Duration::from_secs_f64((expected * 3.0).max(60.0));
    let open = "SELECT count(*) FROM outbox.deliveries WHERE state IN ('pending', 'in_flight')";
    let mut waiting: i64 = n;
    while back.elapsed() < most {
        if let Some(status) = daemon.child.try_wait()? {
            bail!("outboxd exited ({status}) during the recovery run");
        }
        waiting = db.query_one(open, &[]).await?.get(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = back.elapsed().as_secs_f64();
    receiver.abort();
    // The probe's arrival and the backlog's rate from it to the last
    // receipt, timed as `retry-backlog` times its drain.
    let arrivals = tally.arrivals.lock().unwrap().take().unwrap_or_default();
    let since_back = |t: &SystemTime| t.duration_since(back_at).unwrap_or_default().as_secs_f64();
    let first = arrivals
        .values()
        .map(since_back)
        .fold(f64::INFINITY, f64::min);
    let last = arrivals.values().map(since_back).fold(0.0, f64::max);
    let value = if waiting == 0 && last > first {
        format!(
            "drained {secs:.1} s after the endpoint came back (first receipt at {first:.2} s, then {:.0}/s to the last at {last:.2} s)",
            (arrivals.len() as f64 - 1.0) / (last - first)
        )
    } else if waiting == 0 {
        format!("drained {secs:.1} s after the endpoint came back")
    } else {
        db.batch_execute("DELETE FROM outbox.webhooks").await?;
        format!("{waiting} of {n} still waiting {secs:.0} s after the endpoint came back")
    };
    Ok(Row {
        name: format!("recovery: {n} retries scheduled up to 6 h ahead, breaker open"),
        value,
        note: format!(
            "bound: backlog / drain rate ({rate:.0}/s) + the pause ({}) = {expected:.1} s",
            humantime::format_duration(cooldown)
        ),
    })
}

/// `retry-backlog`, and `recovery` after it when asked (it needs the first's
/// drain rate).
pub(crate) async fn runs(b: &mut Bench<'_>, recovery_too: bool) -> Result<Vec<Row>> {
    let url = b.url();
    let (mut rows, rate) =
        retry_backlog(&b.db, &b.tally, &url, b.args.events, b.args.latency_seconds).await?;
    if recovery_too {
        let cooldown = b
            .args
            .daemon_env
            .iter()
            .find_map(|kv| kv.strip_prefix("OUTBOXD_BREAKER_COOLDOWN="))
            .map_or(Ok(Duration::from_secs(30)), humantime::parse_duration)?;
        rows.push(recovery(&b.db, &mut b.daemon, b.args.events, rate, cooldown).await?);
    }
    Ok(rows)
}
