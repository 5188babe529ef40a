//! `outboxd keys`: the halted ordering keys of ordered webhooks under the
//! halt policy, and skipping one. Replaying the failed delivery instead is
//! `outboxd replay --delivery ID`. The queries are `outboxd_admin::keys`,
//! shared with the console.

use anyhow::{anyhow, Result};
use outboxd_admin::keys as ops;

use super::table::{self, Table};
use super::{connect, resolve_webhook};
use crate::config::{KeysArgs, KeysCommand, KeysHaltedArgs, KeysSkipArgs};

pub async fn run(args: KeysArgs) -> Result<()> {
    match args.command {
        KeysCommand::Halted(a) => halted(a).await,
        KeysCommand::Skip(a) => skip(a).await,
    }
}

async fn halted(args: KeysHaltedArgs) -> Result<()> {
    let tenant = args
        .tenant
        .as_deref()
        .map(outboxd_admin::tenants::id)
        .transpose()
        .map_err(|e| anyhow!("--tenant: {e}"))?;
    let client = connect(&args.db).await?;
    let webhook = match args.webhook.as_deref() {
        Some(w) => Some(resolve_webhook(&client, w).await?.id),
        None => None,
    };
    let keys = ops::halted(&client, webhook, tenant.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&keys)?);
        return Ok(());
    }
    if keys.is_empty() {
        println!("no halted keys");
        return Ok(());
    }
    let mut t = Table::new(&[
        "WEBHOOK",
        "KEY",
        "DELIVERY",
        "EVENT",
        "TYPE",
        "FAILED AT",
        "STATUS",
        "WAITING",
        "LAST ERROR",
    ]);
    for k in &keys {
        t.row(vec![
            format!("{} {}", k.webhook_id, k.webhook_name),
            table::cut(&k.ordering_key, 40),
            k.delivery_id.to_string(),
            k.event_id.to_string(),
            k.event_type.clone().unwrap_or_else(|| "?".into()),
            table::time(k.failed_at),
            k.last_status.map_or_else(|| "-".into(), |s| s.to_string()),
            k.waiting.to_string(),
            table::cut(k.last_error.as_deref().unwrap_or("-"), 60),
        ]);
    }
    print!("{}", t.render());
    println!("replay the failed delivery (`outboxd replay --delivery ID`) to send it again first, or skip it (`outboxd keys skip ID`) to send the next one");
    Ok(())
}

async fn skip(args: KeysSkipArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let id = args.delivery;
    let r = ops::skip(&client, id).await.map_err(|e| match e {
        outboxd_admin::Error::NotFound(_) => {
            anyhow!("no delivery with id {id}; `outboxd keys halted` lists the halted keys")
        }
        other => anyhow!(other),
    })?;
    if r.promoted > 0 {
        println!(
            "delivery {id} skipped (it stays failed); the next delivery of its key is pending"
        );
    } else {
        println!("delivery {id} skipped (it stays failed); nothing of its key was waiting");
    }
    Ok(())
}
