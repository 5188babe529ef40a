//! `outboxd replay`: finished deliveries back to `pending` with a fresh
//! attempt budget. The rules (refusing a disabled or removed webhook, the
//! SQL functions outbox.replay and outbox.replay_failed) are
//! `outboxd_admin::replay`, shared with the console.

use anyhow::{anyhow, bail, Result};
use outboxd_admin::replay::{self as ops, Which};

use super::table;
use super::{connect, parse, resolve_webhook, since_time};
use crate::config::{ReplayArgs, ReplayState};

pub async fn run(args: ReplayArgs) -> Result<()> {
    // Checked before connecting: a typo is reported without a round trip.
    let since = args
        .since
        .as_deref()
        .map(parse::since)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let client = connect(&args.db).await?;
    if let Some(id) = args.delivery {
        let r = ops::delivery(&client, id).await.map_err(|e| match e {
            outboxd_admin::Error::NotFound(_) => {
                anyhow!("no delivery with id {id}; `outboxd deliveries` lists recent ones")
            }
            other => anyhow!(other),
        })?;
        if r.replayed == 0 {
            println!(
                "0 deliveries replayed: delivery {id} is {} already",
                r.previous_state
            );
        } else {
            println!("1 delivery replayed: delivery {id} ({} before) is pending again with a fresh attempt budget", r.previous_state);
        }
        return Ok(());
    }

    let (Some(webhook), Some(since)) = (args.webhook.as_deref(), since) else {
        bail!("give --delivery ID, or --webhook WEBHOOK with --since");
    };
    let hook = resolve_webhook(&client, webhook).await?;
    let since = since_time(&client, &since).await?;
    let which = match args.state {
        ReplayState::Failed => Which::Failed,
        ReplayState::Cancelled => Which::Cancelled,
        ReplayState::Delivered => Which::Delivered,
        ReplayState::Finished => Which::Finished,
    };
    let n = ops::webhook(&client, hook.id, since, which).await?;
    println!(
        "{n} {} deliveries of {hook} created since {} UTC replayed: pending again with a fresh attempt budget",
        which.as_str(),
        table::time(since)
    );
    Ok(())
}
