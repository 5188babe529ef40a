//! `outboxd webhooks`: list, add, enable, disable, rotate-secret, remove.
//!
//! The operations and their checks are `outboxd_admin::webhooks`, shared
//! with the console; this module turns flags into their input and their
//! results into tables, lines and JSON. A secret is printed only when it is
//! made (`add`, `rotate-secret`).

use anyhow::{anyhow, Result};
use outboxd_admin::webhooks::{self as ops, WebhookInput};

use super::table::{self, Table};
use super::{connect, parse, resolve_webhook};
use crate::config::{
    ListArgs, WebhookAddArgs, WebhookDisableArgs, WebhookRefArgs, WebhookRotateArgs,
    WebhooksCommand,
};

pub async fn run(command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::List(args) => list(args).await,
        WebhooksCommand::Add(args) => add(args).await,
        WebhooksCommand::Enable(args) => enable(args).await,
        WebhooksCommand::Disable(args) => disable(args).await,
        WebhooksCommand::RotateSecret(args) => rotate(args).await,
        WebhooksCommand::Remove(args) => remove(args).await,
    }
}

async fn list(args: ListArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let hooks = ops::list(&client).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hooks)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "URL",
        "EVENTS",
        "STATE",
        "LAST DELIVERY",
        "SUCCESS 1H",
        "PENDING",
        "RATE LIMIT",
    ]);
    for w in hooks {
        let health = w.health().to_string();
        let last = match (w.last_attempt_age_seconds, &w.last_outcome) {
            (Some(ago), Some(outcome)) => format!("{} ago, {outcome}", table::age(ago)),
            _ => "never".to_owned(),
        };
        let success = match w.success_rate_last_hour {
            None => "-".to_owned(),
            Some(rate) => format!("{:.0}% of {}", 100.0 * rate, w.attempts_last_hour),
        };
        t.row(vec![
            w.id.to_string(),
            w.name,
            w.url,
            w.event_types.join(","),
            health,
            last,
            success,
            w.pending.to_string(),
            w.rate_limit
                .map_or_else(|| "-".to_owned(), |n| format!("{n}/s")),
        ]);
    }
    if t.is_empty() {
        println!("No webhooks yet. Add one: outboxd webhooks add --name NAME --url URL --events 'payment.*'");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

async fn add(args: WebhookAddArgs) -> Result<()> {
    let input = WebhookInput {
        name: args.name.clone(),
        url: args.url.clone(),
        events: args.events.clone(),
        headers: parse::header_pairs(&args.headers).map_err(|e| anyhow!(e))?,
        rate_limit: args.rate_limit.map(Some),
    };
    let checked = input.check().map_err(|e| match e {
        outboxd_admin::Error::Invalid { field, message } => {
            // The flags are named as the fields, but for the repeatable --header.
            let flag = match field {
                "headers" => "header",
                "rate_limit" => "rate-limit",
                other => other,
            };
            anyhow!("--{flag}: {message}")
        }
        other => anyhow!(other),
    })?;
    let client = connect(&args.db).await?;
    for p in ops::uncatalogued(&client, &checked.event_types).await? {
        eprintln!(
            "warning: {p:?} matches no event type in the catalog; check the spelling (`outboxd event-types list`)"
        );
    }
    let created = ops::create(&client, checked, &args.allow_private_targets.policy()).await?;
    for warning in &created.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(());
    }
    println!(
        "Added webhook {} {:?}: {} for {}{}",
        created.id,
        created.webhook.name,
        created.webhook.url,
        created.webhook.event_types.join(", "),
        match created.webhook.rate_limit.flatten() {
            Some(n) => format!(", at most {n} requests/s"),
            None => String::new(),
        }
    );
    println!("Secret (shown only this once; the receiver verifies signatures with it):");
    println!("  {}", created.secret);
    Ok(())
}

async fn enable(args: WebhookRefArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let (hook, changed) = ops::enable(&client, hook.id).await?;
    if changed {
        println!("{hook} enabled: new events reach it again (earlier cancelled deliveries stay cancelled; `outboxd replay` sends them)");
    } else {
        println!("{hook} is enabled already");
    }
    Ok(())
}

async fn disable(args: WebhookDisableArgs) -> Result<()> {
    let mut client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    match ops::disable(&mut client, hook.id, &args.reason).await? {
        (hook, Some(cancelled)) => {
            println!("{hook} disabled; {cancelled} waiting deliveries cancelled")
        }
        (hook, None) => println!("{hook} is disabled already"),
    }
    Ok(())
}

async fn rotate(args: WebhookRotateArgs) -> Result<()> {
    let overlap = parse::duration_or_zero("--overlap", &args.overlap).map_err(|e| anyhow!(e))?;
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let rotated = ops::rotate_secret(&client, hook.id, overlap).await?;
    println!("New secret for {hook} (shown only this once):");
    println!("  {}", rotated.secret);
    match rotated.previous_secret_expires_at {
        Some(t) => println!(
            "Until {} UTC requests carry two signatures, by the new and by the old secret; give the receiver the new secret before then.",
            table::time(t)
        ),
        None => println!("The old secret no longer signs: the receiver needs the new one now."),
    }
    Ok(())
}

async fn remove(args: WebhookRefArgs) -> Result<()> {
    let mut client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let (hook, cancelled) = ops::remove(&mut client, hook.id).await?;
    println!("{hook} removed; {cancelled} waiting deliveries cancelled (the delivery log keeps its attempts)");
    Ok(())
}
