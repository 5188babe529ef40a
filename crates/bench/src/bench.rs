//! What every run shares: the arguments, the bench's own database, the
//! receiver, and the daemon delivering to it.
//!
//! [`Bench::start`] creates the database afresh, starts the daemon and
//! measures it idle; [`Bench::finish`] adds the daemon's idle CPU and peak
//! memory to the table, stops it and drops the database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_postgres::{Client, Config, NoTls};

use crate::daemon::{outboxd_binary, wait_ready, Daemon};
use crate::receiver::{Receiver, Tally};
use crate::table::Row;
use crate::Args;

/// The bench's database: one per bench process, so two benches on one
/// server (engineers sharing a machine) do not drop each other's.
fn db_name() -> String {
    format!("outboxd_bench_{}", std::process::id())
}

pub struct Bench<'r> {
    pub args: Args,
    pub binary: PathBuf,
    /// The bench's database.
    pub db: Client,
    pub db_url: String,
    pub receiver: &'r Receiver,
    pub tally: Arc<Tally>,
    pub daemon: Daemon,
    /// The server's maintenance database, to drop ours at the end.
    admin: Client,
    idle_cpu: f64,
}

impl<'r> Bench<'r> {
    pub async fn start(args: Args, receiver: &'r Receiver) -> Result<Bench<'r>> {
        let binary = outboxd_binary(&args)?;
        let admin = connect(&args.database_url).await?;
        let db_url = format!(
            "{}/{}",
            args.database_url
                .rsplit_once('/')
                .map(|(b, _)| b)
                .unwrap_or(&args.database_url),
            db_name()
        );
        let db = create_database(&admin, &args.database_url).await?;
        println!(
            "outboxd-bench: {} cores, receiver {}",
            num_cpus(),
            receiver.url()
        );

        let daemon = Daemon::start(&binary, &db_url, &args.daemon_env)?;
        wait_ready(&db).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_cpu_start = daemon.cpu_seconds()?;
        let idle_t = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_cpu = (daemon.cpu_seconds()? - idle_cpu_start) / idle_t.elapsed().as_secs_f64();
        Ok(Bench {
            args,
            binary,
            db,
            db_url,
            tally: receiver.tally.clone(),
            receiver,
            daemon,
            admin,
            idle_cpu,
        })
    }

    /// Starts over on an empty database with a daemon started with `extra`
    /// settings after the `--env` ones (so they win), and waits until it is
    /// idle. The daemon's first rounds shape the schema's state (the
    /// delivery log's partitions are as wide as the retention it was started
    /// with), so a run that needs other settings gets a database of its own.
    pub async fn start_over(&mut self, extra: &[String]) -> Result<()> {
        self.daemon.stop().await;
        self.db = create_database(&self.admin, &self.args.database_url).await?;
        let env: Vec<String> = self.args.daemon_env.iter().chain(extra).cloned().collect();
        self.daemon = Daemon::start(&self.binary, &self.db_url, &env)?;
        wait_ready(&self.db).await
    }

    /// The receiver's fast URL.
    pub fn url(&self) -> String {
        self.receiver.url()
    }

    /// The closing rows; stops the daemon and drops the database.
    pub async fn finish(mut self) -> Result<Vec<Row>> {
        let rows = vec![
            Row::new(
                "daemon CPU while idle",
                format!("{:.2}% of a core", self.idle_cpu * 100.0),
                "3 s with nothing to do",
            ),
            Row::new(
                "daemon peak RSS",
                format!("{:.1} MB", self.daemon.peak_rss_kb()? as f64 / 1024.0),
                "VmHWM over the whole run",
            ),
        ];
        self.daemon.stop().await;
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                db_name()
            ))
            .await?;
        Ok(rows)
    }
}

/// Creates the bench's database afresh on the server at `server_url`,
/// migrated; a client of it.
async fn create_database(admin: &Client, server_url: &str) -> Result<Client> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            db_name()
        ))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", db_name()))
        .await?;
    let mut config: Config = server_url.parse()?;
    config.dbname(db_name());
    outboxd_db::migrate::run(&config).await?;
    let (client, conn) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to the database {}", db_name()))?;
    tokio::spawn(conn);
    Ok(client)
}

pub async fn connect(url: &str) -> Result<Client> {
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
