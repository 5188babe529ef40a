//! `outboxd replay`: finished deliveries back to `pending` with a fresh
//! attempt budget, through the SQL functions outbox.replay and
//! outbox.replay_failed, so the CLI and psql replay the same way. The
//! daemon picks them up on its next claim.
//!
//! A disabled webhook is refused: the daemon would only cancel the replayed
//! deliveries again.

use anyhow::{anyhow, bail, Result};

use super::table;
use super::{connect, parse, resolve_webhook, since_time, PgResult};
use crate::config::{ReplayArgs, ReplayState};

const DELIVERY: &str = "
SELECT d.state, d.webhook_id, w.name, w.enabled
  FROM outbox.deliveries d
  LEFT JOIN outbox.webhooks w ON w.id = d.webhook_id
 WHERE d.id = $1";

/// States other than `failed` go through outbox.replay one by one, which
/// keeps the rules of a replay in the SQL function.
const REPLAY_STATES: &str = "
SELECT coalesce(sum(outbox.replay(id)), 0)::int4
  FROM outbox.deliveries
 WHERE webhook_id = $1 AND state = ANY($2) AND created_at >= $3";

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
        let Some(row) = client.query_opt(DELIVERY, &[&id]).await.pg()? else {
            bail!("no delivery with id {id}; `outboxd deliveries` lists recent ones");
        };
        let state: String = row.get(0);
        let webhook_id: i64 = row.get(1);
        match (row.get::<_, Option<String>>(2), row.get::<_, Option<bool>>(3)) {
            (None, _) => bail!("delivery {id} cannot be replayed: its webhook {webhook_id} was removed"),
            (Some(name), Some(false)) => bail!(
                "delivery {id} cannot be replayed: webhook {webhook_id} {name:?} is disabled (`outboxd webhooks enable {webhook_id}` first)"
            ),
            _ => {}
        }
        let n: i32 = client
            .query_one("SELECT outbox.replay($1)", &[&id])
            .await
            .pg()?
            .get(0);
        if n == 0 {
            println!("0 deliveries replayed: delivery {id} is {state} already");
        } else {
            println!("1 delivery replayed: delivery {id} ({state} before) is pending again with a fresh attempt budget");
        }
        return Ok(());
    }

    let (Some(webhook), Some(since)) = (args.webhook.as_deref(), since) else {
        bail!("give --delivery ID, or --webhook WEBHOOK with --since");
    };
    let hook = resolve_webhook(&client, webhook).await?;
    if !hook.enabled {
        bail!(
            "{hook} is disabled: enable it first (`outboxd webhooks enable {}`), or the replayed deliveries would be cancelled again",
            hook.id
        );
    }
    let since = since_time(&client, &since).await?;
    let (n, which): (i32, &str) = match args.state {
        ReplayState::Failed => (
            client
                .query_one("SELECT outbox.replay_failed($1, $2)", &[&hook.id, &since])
                .await
                .pg()?
                .get(0),
            "failed",
        ),
        other => {
            let (states, which): (&[&str], &str) = match other {
                ReplayState::Cancelled => (&["cancelled"], "cancelled"),
                ReplayState::Delivered => (&["delivered"], "delivered"),
                _ => (&["failed", "cancelled", "delivered"], "finished"),
            };
            let n = client
                .query_one(REPLAY_STATES, &[&hook.id, &states, &since])
                .await
                .pg()?
                .get(0);
            (n, which)
        }
    };
    println!(
        "{n} {which} deliveries of {hook} created since {} UTC replayed: pending again with a fresh attempt budget",
        table::time(since)
    );
    Ok(())
}
