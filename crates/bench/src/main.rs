//! `outboxd-bench`: the figures in docs/performance.md, reproducible with one command.
//!
//! It creates its own database, starts its own receiver on loopback, runs
//! the real `outboxd` binary (release build) as a child process, and prints
//! a table. Each run lives in a module of its own and takes the shared
//! [`Bench`]; this file only parses the arguments and dispatches.
//! Everything runs on this machine together, as a small deployment would.

mod bench;
mod chaos;
mod daemon;
mod dead;
mod drain;
mod fairness;
mod fixture;
mod insert;
mod lanes;
mod latency;
mod many;
mod ordered;
mod rate;
mod receiver;
mod skew;
mod soak;
mod table;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::bench::Bench;
use crate::receiver::Receiver;
use crate::table::Row;

#[derive(Debug, Parser)]
#[command(about = "Measures outboxd: drain, fan-out, latency, host insert cost, CPU and memory")]
pub struct Args {
    /// PostgreSQL server (the bench creates and drops its own database there)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// The outboxd binary (default: next to this one)
    #[arg(long)]
    pub outboxd: Option<PathBuf>,
    /// Deliveries per drain run
    #[arg(long, default_value_t = 100_000)]
    pub events: i64,
    /// Seconds of steady 100/s publishing for the latency run
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// Seconds per host insert run
    #[arg(long, default_value_t = 5)]
    pub insert_seconds: u64,
    /// Finished deliveries to put in the tables before a second drain (0 skips it)
    #[arg(long, default_value_t = 1_000_000)]
    pub history: i64,
    /// Extra environment for the daemon, KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub daemon_env: Vec<String>,
    /// Rounds of each side in the many-webhooks and dead-endpoint runs,
    /// taking turns
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Ordering keys the ordered run spreads its events over (the target is
    /// stated for 1,000)
    #[arg(long, default_value_t = 1_000)]
    pub ordering_keys: i64,
    /// The limit of the rate-limited webhook in the rate run, requests per second
    #[arg(long, default_value_t = 200)]
    pub rate_limit: i32,
    /// Offered events per second in the skew run
    #[arg(long, default_value_t = 5_000)]
    pub skew_rate: u64,
    /// Seconds of publishing in the skew run
    #[arg(long, default_value_t = 20)]
    pub skew_seconds: u64,
    /// Tenant A's backlog in the fairness run
    #[arg(long, default_value_t = 100_000)]
    pub fairness_backlog: i64,
    /// Tenant B's events per second in the fairness run
    #[arg(long, default_value_t = 20)]
    pub fairness_rate: u64,
    /// Seconds of B's publishing in each fairness measure
    #[arg(long, default_value_t = 20)]
    pub fairness_seconds: u64,
    /// How long the soak publishes (run it with `--only soak`)
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// Offered events per second in the soak
    #[arg(long, default_value_t = 20_000)]
    pub soak_rate: u64,
    /// The daemon's `OUTBOXD_RETENTION` during the soak
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub soak_retention: Duration,
    /// Time between two samples of the soak
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub soak_sample: Duration,
    /// Only these runs (comma-separated: drain,fanout,latency,insert,many,sparse,dead,hang,skew,
    /// fairness,ordered,history,rate,retry-backlog,recovery,soak; soak only when named)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Instead of the measurements, the chaos soak for this long (e.g. 10m):
    /// three replicas under load, killed, PostgreSQL restarted, the network
    /// to the database stalled and cut; needs PostgreSQL's server tools
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub chaos: Option<Duration>,
    /// Events published per second during the chaos soak
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub chaos_rate: u64,
    /// Seed of the chaos soak's fault schedule (default: from the clock)
    #[arg(long, value_name = "N")]
    pub chaos_seed: Option<u64>,
}

/// The runs in the order they run; without `--only`, all of them but
/// [`NAMED_ONLY`].
const RUNS: &[&str] = &[
    "drain",
    "fanout",
    "latency",
    "insert",
    "many",
    "sparse",
    "dead",
    "hang",
    "skew",
    "fairness",
    "ordered",
    "history",
    "rate",
    "retry-backlog",
    "recovery",
    "soak",
];

/// Runs too long for the default set: they run when `--only` names them.
const NAMED_ONLY: &[&str] = &["soak"];

/// Whether `--only` asks for the run `name`. `recovery` needs the drain
/// rate `retry-backlog` measures, so it asks for both (and runs with it).
fn wanted(only: &[String], name: &str) -> bool {
    if only.is_empty() {
        return !NAMED_ONLY.contains(&name);
    }
    only.iter().any(|o| o == name)
        || (name == "retry-backlog" && only.iter().any(|o| o == "recovery"))
}

/// Runs one measurement; the rows it adds to the table.
async fn run(name: &str, b: &mut Bench<'_>) -> Result<Vec<Row>> {
    match name {
        "drain" => drain::drain(b).await,
        "fanout" => drain::fanout(b).await,
        "latency" => latency::run(b).await,
        "insert" => insert::run(b).await,
        "many" => many::many(b).await,
        "sparse" => many::sparse(b).await,
        "dead" => dead::refused(b).await,
        "hang" => dead::hanging(b).await,
        "skew" => skew::run(b).await,
        "fairness" => fairness::run(b).await,
        "ordered" => {
            let url = b.url();
            ordered::run(&b.db, &b.tally, &mut b.daemon, &url, &b.args).await
        }
        "history" => drain::history(b).await,
        "rate" => rate::run(b).await,
        "retry-backlog" => {
            let recovery = wanted(&b.args.only, "recovery");
            lanes::runs(b, recovery).await
        }
        // Run with retry-backlog, whose drain rate it needs.
        "recovery" => Ok(Vec::new()),
        "soak" => soak::run(b).await,
        other => bail!("unknown run {other:?}: the runs are {}", RUNS.join(",")),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(duration) = args.chaos {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(chaos::run(&args, duration));
    }
    for name in &args.only {
        if !RUNS.contains(&name.as_str()) {
            bail!(
                "unknown run {name:?} in --only: the runs are {}",
                RUNS.join(",")
            );
        }
    }
    let receiver = Receiver::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut b = Bench::start(args, &receiver).await?;
        let mut rows = Vec::new();
        for name in RUNS {
            if wanted(&b.args.only, name) {
                rows.extend(run(name, &mut b).await?);
            }
        }
        rows.extend(b.finish().await?);
        table::print(&rows);
        Ok(())
    })
}
