//! The `outboxd` child process: started with the bench's database and
//! receiver allowed, read for its CPU time and memory from /proc, stopped
//! with SIGTERM as an operator would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::Args;

/// The outboxd binary: `--outboxd`, else the one next to this binary.
pub fn outboxd_binary(args: &Args) -> Result<PathBuf> {
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

/// Waits until the daemon's dispatcher went idle once.
pub async fn wait_ready(db: &Client) -> Result<()> {
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

pub struct Daemon {
    pub child: Child,
    pub pid: u32,
}

impl Daemon {
    pub fn start(binary: &Path, db_url: &str, extra: &[String]) -> Result<Daemon> {
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .env("DATABASE_URL", db_url)
            .env("OUTBOXD_LISTEN", "127.0.0.1:0")
            .env("OUTBOXD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
            // The fairness run's tenants deliver to the receiver too.
            .env("OUTBOXD_TENANT_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
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
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let after = stat.rsplit_once(')').context("parsing /proc stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / 100.0)
    }

    /// The highest resident set so far (VmHWM), in kB.
    pub fn peak_rss_kb(&self) -> Result<u64> {
        self.status_kb("VmHWM:")
    }

    /// The resident set now (VmRSS), in kB.
    pub fn rss_kb(&self) -> Result<u64> {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("{field} in /proc status"))?;
        Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
    }

    /// Fails when the daemon has exited.
    pub fn check_alive(&mut self, during: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("outboxd exited ({status}) during {during}; its log is above");
        }
        Ok(())
    }

    pub async fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await;
    }
}
