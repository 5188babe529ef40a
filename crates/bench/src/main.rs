//! `outboxd-bench`: the figures in docs/performance.md, reproducible with one command.
//!
//! It creates its own database, starts its own fast receiver on loopback,
//! runs the real `outboxd` binary (release build) as a child process, and
//! measures: drain rate for one and for ten webhooks, for 10,000 webhooks
//! against one, with 100,000 enabled and few active, and healthy webhooks
//! beside dead ones (`--only many,sparse,dead`), commit-to-receipt
//! latency at a steady 100 events/s, the host's insert rate into the outbox
//! against a plain table, the rate a rate-limited webhook gets from two
//! daemons, and the daemon's CPU time and peak memory.
//! Everything runs on this machine together, as a small deployment would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio_postgres::{Client, Config, NoTls};

mod lanes;
mod ordered;

#[derive(Debug, Parser)]
#[command(about = "Measures outboxd: drain, fan-out, latency, host insert cost, CPU and memory")]
struct Args {
    /// PostgreSQL server (the bench creates and drops its own database there)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// The outboxd binary (default: next to this one)
    #[arg(long)]
    outboxd: Option<PathBuf>,
    /// Deliveries per drain run
    #[arg(long, default_value_t = 100_000)]
    events: i64,
    /// Seconds of steady 100/s publishing for the latency run
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Seconds per host insert run
    #[arg(long, default_value_t = 5)]
    insert_seconds: u64,
    /// Finished deliveries to put in the tables before a second drain (0 skips it)
    #[arg(long, default_value_t = 1_000_000)]
    history: i64,
    /// Extra environment for the daemon, KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    daemon_env: Vec<String>,
    /// Rounds of each side in the many-webhooks and dead-endpoint runs,
    /// taking turns
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The limit of the rate-limited webhook in the rate run, requests per second
    #[arg(long, default_value_t = 200)]
    rate_limit: i32,
    /// Only these runs (comma-separated: drain,fanout,latency,insert,history,rate,many,sparse,dead,
    /// retry-backlog,recovery,ordered)
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Instead of the measurements, the chaos soak for this long (e.g. 10m):
    /// three replicas under load, killed, PostgreSQL restarted, the network
    /// to the database stalled and cut; needs PostgreSQL's server tools
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    chaos: Option<Duration>,
    /// Events published per second during the chaos soak
    #[arg(long, default_value_t = 2000, value_name = "N")]
    chaos_rate: u64,
    /// Seed of the chaos soak's fault schedule (default: from the clock)
    #[arg(long, value_name = "N")]
    chaos_seed: Option<u64>,
}

/// The receiver: counts requests, remembers when each event id arrived.
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    arrivals: Mutex<Option<HashMap<i64, SystemTime>>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(duration) = args.chaos {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(chaos(&args, duration));
    }
    // The receiver gets a runtime of its own with one thread, as a separate
    // small service would; the bench's database work another.
    let tally = Arc::new(Tally::default());
    let rx_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rx_runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    rx_runtime.spawn(receive(listener, tally.clone()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(args, receiver_url, tally))
}

async fn receive(listener: TcpListener, tally: Arc<Tally>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tally = tally.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tally = tally.clone();
                async move {
                    let id = req
                        .headers()
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("evt_"))
                        .and_then(|v| v.parse::<i64>().ok());
                    let _ = req.into_body().collect().await;
                    let now = SystemTime::now();
                    if let (Some(id), Some(map)) = (id, tally.arrivals.lock().unwrap().as_mut()) {
                        map.entry(id).or_insert(now);
                    }
                    tally.count.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(204)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Row {
    name: String,
    value: String,
    note: String,
}

/// The outboxd binary: `--outboxd`, else the one next to this binary.
fn outboxd_binary(args: &Args) -> Result<PathBuf> {
    let binary = match &args.outboxd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating the outboxd binary")?
            .join("outboxd"),
    };
    if !binary.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p outboxd -p outboxd-bench`",
            binary.display()
        );
    }
    Ok(binary)
}

/// `--chaos`: the soak of `outboxd_testkit::chaos`, its figures printed;
/// fails when anything was lost or a bound was passed.
async fn chaos(args: &Args, duration: Duration) -> Result<()> {
    let seed = args.chaos_seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let soak = outboxd_testkit::chaos::Soak {
        bin: outboxd_binary(args)?.to_string_lossy().into_owned(),
        duration,
        rate: args.chaos_rate,
        replicas: 3,
        seed,
    };
    println!(
        "outboxd-bench: chaos soak for {}, {} events/s, seed {seed}",
        humantime::format_duration(duration),
        args.chaos_rate
    );
    let report = soak.run().await.map_err(|e| {
        anyhow::anyhow!("the chaos soak needs a PostgreSQL cluster of its own: {e}")
    })?;
    println!("{report}");
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("the chaos soak failed: {}", failures.join("; "));
    }
    Ok(())
}

async fn bench(args: Args, receiver_url: String, tally: Arc<Tally>) -> Result<()> {
    let binary = outboxd_binary(&args)?;
    let only = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let admin = connect(&args.database_url).await?;
    let db_name = "outboxd_bench";
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .await?;
    let mut config: Config = args.database_url.parse()?;
    config.dbname(db_name);
    let db_url = format!(
        "{}/{db_name}",
        args.database_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&args.database_url)
    );
    outboxd_db::migrate::run(&config).await?;
    let db = connect(&db_url).await?;
    let mut rows = Vec::new();
    println!(
        "outboxd-bench: {} cores, receiver {receiver_url}",
        num_cpus()
    );

    let mut daemon = Daemon::start(&binary, &db_url, &args.daemon_env)?;
    wait_ready(&db).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_cpu_start = daemon.cpu_seconds()?;
    let idle_t = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu = (daemon.cpu_seconds()? - idle_cpu_start) / idle_t.elapsed().as_secs_f64();

    if only("drain") {
        set_webhooks(&db, &receiver_url, 1).await?;
        let cpu0 = daemon.cpu_seconds()?;
        let (rate, secs) = drain(&db, &tally, &mut daemon, args.events, 1).await?;
        let cpu = daemon.cpu_seconds()? - cpu0;
        rows.push(Row {
            name: "drain, 1 webhook".into(),
            value: format!("{rate:.0} deliveries/s"),
            note: format!(
                "{} deliveries in {secs:.2} s; daemon CPU {cpu:.1} s",
                args.events
            ),
        });
    }
    if only("fanout") {
        set_webhooks(&db, &receiver_url, 10).await?;
        let (rate, secs) = drain(&db, &tally, &mut daemon, args.events / 10, 10).await?;
        rows.push(Row {
            name: "fan-out, 10 webhooks".into(),
            value: format!("{rate:.0} deliveries/s"),
            note: format!("{} events x 10 webhooks in {secs:.2} s", args.events / 10),
        });
    }
    if only("latency") {
        set_webhooks(&db, &receiver_url, 1).await?;
        // Into an idle daemon, as the measure is defined: after the drains
        // it polls for a while before it asks for notifications again.
        wait_ready(&db).await?;
        let (p50, p99, max, n) = latency(&db, &tally, args.latency_seconds).await?;
        rows.push(Row {
            name: "latency at 100 events/s".into(),
            value: format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
            note: format!("{n} events, commit to receipt"),
        });
    }
    if only("insert") {
        // No webhook: the daemon only reads the events, so this is the cost
        // of the insert path itself (trigger, checks, the fan-out's reads).
        // The two tables take turns, so that the machine's drift (tens of
        // percent from one minute to the next, here) falls on both alike.
        set_webhooks(&db, &receiver_url, 0).await?;
        let (mut plain, mut outbox) = (0.0, 0.0);
        for _ in 0..INSERT_ROUNDS {
            plain += inserts(&db_url, "bench.plain", args.insert_seconds).await?;
            outbox += inserts(&db_url, "outbox.events", args.insert_seconds).await?;
        }
        plain /= INSERT_ROUNDS as f64;
        outbox /= INSERT_ROUNDS as f64;
        // One webhook: the same two cores also deliver every event.
        set_webhooks(&db, &receiver_url, 1).await?;
        let delivering = inserts(&db_url, "outbox.events", args.insert_seconds).await?;
        rows.push(Row {
            name: "host inserts, plain table".into(),
            value: format!("{plain:.0} tx/s"),
            note: format!(
                "8 clients, single-row insert transactions; {INSERT_ROUNDS} runs of each table, taking turns"
            ),
        });
        rows.push(Row {
            name: "host inserts, outbox.events".into(),
            value: format!("{outbox:.0} tx/s ({:.0}% of plain)", 100.0 * outbox / plain),
            note: "same, daemon running, no webhook subscribed".into(),
        });
        rows.push(Row {
            name: "host inserts, outbox.events, delivered".into(),
            value: format!(
                "{delivering:.0} tx/s ({:.0}% of plain)",
                100.0 * delivering / plain
            ),
            note: "same, daemon delivering each event to a webhook on the same cores".into(),
        });
        // Let the daemon deliver what the insert run published.
        wait_drained(&db).await?;
    }
    if only("many") {
        // 10,000 webhooks, each subscribed to its own t<i>.*, the events
        // spread evenly, against one webhook, taking turns.
        let mut rates: HashMap<i64, Vec<f64>> = HashMap::new();
        for _ in 0..args.rounds {
            for n in [1, 10_000] {
                set_own_webhooks(&db, &receiver_url, n, 0).await?;
                let (rate, _) = drain_spread(&db, &tally, &mut daemon, args.events, n, n).await?;
                rates.entry(n).or_default().push(rate);
            }
        }
        let (one, many) = (median(&rates[&1]), median(&rates[&10_000]));
        rows.push(Row {
            name: "many webhooks: 1".into(),
            value: format!("{one:.0} deliveries/s"),
            note: format!("{} events; median of {} runs", args.events, args.rounds),
        });
        rows.push(Row {
            name: "many webhooks: 10,000, events spread evenly".into(),
            value: format!("{many:.0} deliveries/s ({:.0}% of 1)", 100.0 * many / one),
            note: format!(
                "{} events; median of {} runs, taking turns with 1",
                args.events, args.rounds
            ),
        });
    }
    if only("sparse") {
        set_own_webhooks(&db, &receiver_url, 100_000, 0).await?;
        let (rate, secs) =
            drain_spread(&db, &tally, &mut daemon, args.events, 1_000, 1_000).await?;
        rows.push(Row {
            name: "100,000 webhooks enabled, 1,000 receive events".into(),
            value: format!("{rate:.0} deliveries/s"),
            note: format!("{} events in {secs:.2} s", args.events),
        });
    }
    if only("dead") {
        // 100 healthy webhooks alone, then beside 100 whose port refuses
        // connections, each with events of its own, taking turns.
        let mut alone = Vec::new();
        let mut beside = Vec::new();
        for _ in 0..args.rounds {
            set_own_webhooks(&db, &receiver_url, 100, 0).await?;
            alone.push(
                drain_spread(&db, &tally, &mut daemon, args.events / 2, 100, 100)
                    .await?
                    .0,
            );
            set_own_webhooks(&db, &receiver_url, 100, 100).await?;
            // Half the events go to the dead ones: only the healthy half
            // is counted, as it arrives.
            beside.push(
                drain_spread(&db, &tally, &mut daemon, args.events, 200, 100)
                    .await?
                    .0,
            );
            cancel_open(&db).await?;
        }
        let (alone, beside) = (median(&alone), median(&beside));
        rows.push(Row {
            name: "100 healthy webhooks".into(),
            value: format!("{alone:.0} deliveries/s"),
            note: format!("{} events; median of {} runs", args.events / 2, args.rounds),
        });
        rows.push(Row {
            name: "100 healthy beside 100 refusing connections".into(),
            value: format!(
                "{beside:.0} deliveries/s ({:.0}% of alone)",
                100.0 * beside / alone
            ),
            note: format!(
                "{} events, half to the dead ones; healthy deliveries counted; taking turns",
                args.events
            ),
        });
    }
    if only("ordered") {
        rows.extend(ordered::run(&db, &tally, &mut daemon, &receiver_url, &args).await?);
    }
    if only("history") && args.history > 0 {
        set_webhooks(&db, &receiver_url, 1).await?;
        add_history(&db, args.history).await?;
        let (rate, secs) = drain(&db, &tally, &mut daemon, args.events, 1).await?;
        rows.push(Row {
            name: format!(
                "drain, 1 webhook, {} finished deliveries in the tables",
                args.history
            ),
            value: format!("{rate:.0} deliveries/s"),
            note: format!("{} deliveries in {secs:.2} s", args.events),
        });
    }
    if only("rate") {
        let (achieved, limit) =
            rate_limited(&db, &tally, &binary, &db_url, &receiver_url, &args).await?;
        rows.push(Row {
            name: "rate-limited webhook, 2 daemons".into(),
            value: format!(
                "{achieved:.1} requests/s ({:.1}% of the limit)",
                100.0 * achieved / f64::from(limit)
            ),
            note: format!(
                "limit {limit}/s, a backlog all along, counted at the receiver over {RATE_SECONDS} s"
            ),
        });
    }
    rows.extend(lanes::runs(only, &db, &tally, &mut daemon, &receiver_url, &args).await?);
    rows.push(Row {
        name: "daemon CPU while idle".into(),
        value: format!("{:.2}% of a core", idle_cpu * 100.0),
        note: "3 s with nothing to do".into(),
    });
    rows.push(Row {
        name: "daemon peak RSS".into(),
        value: format!("{:.1} MB", daemon.peak_rss_kb()? as f64 / 1024.0),
        note: "VmHWM over the whole run".into(),
    });
    daemon.stop().await;

    println!();
    println!("| measure | result | notes |");
    println!("| --- | --- | --- |");
    for r in rows {
        println!("| {} | {} | {} |", r.name, r.value, r.note);
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .await?;
    Ok(())
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(conn);
    Ok(client)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Replaces the webhooks with `n` subscribed to everything at the receiver.
async fn set_webhooks(db: &Client, url: &str, n: i64) -> Result<()> {
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

/// Replaces the webhooks with `n` at the receiver, each subscribed to its
/// own `t<i>.*`, and `dead` more after them at a port that refuses
/// connections.
async fn set_own_webhooks(db: &Client, url: &str, n: i64, dead: i64) -> Result<()> {
    db.batch_execute("DELETE FROM outbox.webhooks").await?;
    let refused = format!("http://127.0.0.1:{}/dead", closed_port()?);
    db.execute(
        "INSERT INTO outbox.webhooks (name, url, event_types)
         SELECT 'bench ' || i, CASE WHEN i <= $2 THEN $1 ELSE $4 END, ARRAY['t' || i || '.*']
           FROM generate_series(1, $2::int8 + $3::int8) AS i",
        &[&url, &n, &dead, &refused],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// A port nothing listens on.
fn closed_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Cancels what is still waiting (the dead webhooks' deliveries), so the
/// next run starts empty.
async fn cancel_open(db: &Client) -> Result<()> {
    db.batch_execute(
        "UPDATE outbox.deliveries SET state = 'cancelled', locked_until = NULL
          WHERE state IN ('pending', 'in_flight')",
    )
    .await?;
    Ok(())
}

/// Inserts `events` events spread evenly over the types `t1.*` to
/// `t<spread>.*` and waits until the receiver has the deliveries of the
/// first `counted` of them. Returns (deliveries/s of those, seconds).
async fn drain_spread(
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn wait_for_tally(
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
        if let Some(status) = daemon.child.try_wait()? {
            bail!("outboxd exited ({status}) during the drain; its log is above");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Inserts `events` events in one transaction and waits until the receiver
/// has `events * webhooks` more requests. Returns (deliveries/s, seconds).
async fn drain(
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
async fn wait_drained(db: &Client) -> Result<()> {
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
    let mut ms: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            let got = arrivals.get(id)?;
            Some(got.duration_since(*at).unwrap_or_default().as_secs_f64() * 1000.0)
        })
        .collect();
    if ms.len() < committed.len() {
        bail!(
            "only {} of {} latency events arrived",
            ms.len(),
            committed.len()
        );
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok((pct(0.50), pct(0.99), *ms.last().unwrap(), ms.len()))
}

/// Runs of the plain and the outbox table in the host insert measure.
const INSERT_ROUNDS: usize = 3;

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
    // One statement per call: several in one batch form a transaction
    // block, where VACUUM cannot run.
    for table in ["events", "deliveries", "delivery_attempts"] {
        db.batch_execute(&format!("VACUUM ANALYZE outbox.{table}"))
            .await?;
    }
    println!(
        "history: {n} finished deliveries added in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Seconds the rate run counts over.
const RATE_SECONDS: u64 = 10;

/// One webhook limited to `--rate-limit`, a second daemon beside the first,
/// a backlog longer than the run: the requests a second the receiver gets,
/// counted from one second after the first (past the bucket's burst).
async fn rate_limited(
    db: &Client,
    tally: &Tally,
    binary: &PathBuf,
    db_url: &str,
    receiver_url: &str,
    args: &Args,
) -> Result<(f64, i32)> {
    let limit = args.rate_limit;
    set_webhooks(db, receiver_url, 0).await?;
    let mut second = Daemon::start(binary, db_url, &args.daemon_env)?;
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

async fn wait_ready(db: &Client) -> Result<()> {
    // The daemon migrates (a no-op here) and starts listening; the wake-up
    // flag being set means its dispatcher went idle once.
    for _ in 0..200 {
        let idle: bool = db
            .query_one("SELECT requested FROM outbox.wakeup", &[])
            .await?
            .get(0);
        if idle {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the daemon did not become idle")
}

struct Daemon {
    child: Child,
    pid: u32,
}

impl Daemon {
    fn start(binary: &PathBuf, db_url: &str, extra: &[String]) -> Result<Daemon> {
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .env("DATABASE_URL", db_url)
            .env("OUTBOXD_LISTEN", "127.0.0.1:0")
            .env("OUTBOXD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        for kv in extra {
            let (k, v) = kv.split_once('=').context("--env takes KEY=VALUE")?;
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting outboxd")?;
        let pid = child.id().context("outboxd pid")?;
        Ok(Daemon { child, pid })
    }

    /// User plus system CPU seconds so far, from /proc.
    fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let after = stat.rsplit_once(')').context("parsing /proc stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / 100.0)
    }

    fn peak_rss_kb(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .context("VmHWM in /proc status")?;
        Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }

    async fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await;
    }
}
