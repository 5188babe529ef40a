//! `--chaos`: the soak of `outboxd_testkit::chaos` (replicas killed,
//! PostgreSQL restarted, the network stalled and cut), its figures printed;
//! fails when anything was lost or a bound was passed.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};

use crate::daemon::outboxd_binary;
use crate::Args;

pub async fn run(args: &Args, duration: Duration) -> Result<()> {
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
