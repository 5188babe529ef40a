//! `outboxd deliveries`: the recent delivery log, filtered, and
//! `deliveries show <id>`: one delivery with every attempt and the stored
//! response bodies, as tables and text. The queries are
//! `outboxd_admin::deliveries`, shared with the console.

use anyhow::{anyhow, Result};
use outboxd_admin::deliveries::{self as ops, LogFilter};
use outboxd_core::DeliveryState;

use super::table::{self, Table};
use super::{connect, parse, resolve_webhook, since_time};
use crate::config::{DeliveriesArgs, DeliveriesCommand, DeliveriesFilter, DeliveryShowArgs};

pub async fn run(args: DeliveriesArgs) -> Result<()> {
    match args.command {
        Some(DeliveriesCommand::Show(show_args)) => show(show_args).await,
        None => list(args.filter).await,
    }
}

async fn list(f: DeliveriesFilter) -> Result<()> {
    let since = f
        .since
        .as_deref()
        .map(parse::since)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    if let Some(t) = &f.event_type {
        outboxd_admin::validate::event_type(t)?;
    }
    let client = connect(&f.db).await?;
    let webhook_id = match &f.webhook {
        Some(w) => Some(resolve_webhook(&client, w).await?.id),
        None => None,
    };
    let since = match &since {
        Some(s) => Some(since_time(&client, s).await?),
        None => None,
    };
    let filter = LogFilter {
        webhook_id,
        state: f.state,
        event_type: f.event_type.clone(),
        since,
        limit: f.limit as i64,
    };
    let rows = ops::log(&client, &filter).await?;
    if f.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "TIME (UTC)",
        "DELIVERY",
        "WEBHOOK",
        "EVENT TYPE",
        "ATTEMPT",
        "STATUS / ERROR",
        "MS",
        "OUTCOME",
        "STATE",
    ]);
    for r in rows {
        let webhook = match &r.webhook_name {
            Some(name) => format!("{} {name}", r.webhook_id),
            None => format!("{} (removed)", r.webhook_id),
        };
        let mut event_type = r.event_type.clone().unwrap_or_else(|| "?".into());
        if r.is_test {
            event_type.push_str(" (test)");
        }
        t.row(vec![
            table::time(r.started_at),
            r.delivery_id.to_string(),
            webhook,
            event_type,
            r.attempt.to_string(),
            status_or_error(r.status_code, r.error),
            format!("{:.1}", r.duration_ms),
            r.outcome,
            r.delivery_state
                .map_or_else(|| "-".into(), |s| s.to_string()),
        ]);
    }
    if t.is_empty() {
        println!("No attempts match.");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

fn status_or_error(status: Option<i32>, error: Option<String>) -> String {
    match (status, error) {
        (Some(s), Some(e)) => format!("{s} ({e})"),
        (Some(s), None) => s.to_string(),
        (None, Some(e)) => e,
        (None, None) => "-".into(),
    }
}

async fn show(args: DeliveryShowArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let d = ops::show(&client, args.id).await.map_err(|e| match e {
        outboxd_admin::Error::NotFound(_) => anyhow!(
            "no delivery with id {}; `outboxd deliveries` lists recent ones",
            args.id
        ),
        other => anyhow!(other),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let replays = match d.replays {
        0 => String::new(),
        1 => " (replayed once)".into(),
        n => format!(" (replayed {n} times)"),
    };
    println!(
        "Delivery {}: {} after {} attempt(s){replays}",
        args.id, d.state, d.total_attempts
    );
    let webhook = match (&d.webhook_name, &d.webhook_url) {
        (Some(name), Some(url)) => format!("{} {name:?} {url}", d.webhook_id),
        _ => format!("{} (removed)", d.webhook_id),
    };
    println!("  webhook       {webhook}");
    let test = if d.is_test { " (test)" } else { "" };
    println!(
        "  event         {} {}{test}, created {} UTC",
        d.event_id,
        d.event_type.as_deref().unwrap_or("?"),
        d.event_created_at
            .map(table::time)
            .unwrap_or_else(|| "?".into())
    );
    if let Some(p) = &d.payload {
        println!("  payload       {}", table::cut(p.text(), 200));
    }
    match d.state {
        DeliveryState::Pending => {
            println!("  next attempt  {} UTC", table::time(d.next_attempt_at))
        }
        DeliveryState::Delivered => {
            if let Some(t) = d.delivered_at {
                println!("  delivered at  {} UTC", table::time(t));
            }
        }
        _ => {}
    }
    if let Some(e) = &d.last_error {
        println!("  last error    {e}");
    }
    if d.attempt_log.is_empty() {
        println!("No attempts yet.");
    }
    for a in d.attempt_log {
        println!();
        println!(
            "Attempt {}  {} UTC  {:.1} ms  {}  -> {}",
            a.attempt,
            table::time(a.started_at),
            a.duration_ms,
            status_or_error(a.status_code, a.error),
            a.outcome
        );
        if let Some(url) = &a.url {
            println!("  url {url}");
        }
        match a.response_body {
            Some(body) => {
                println!("  response body:");
                for line in body.lines() {
                    println!("    {line}");
                }
            }
            None => println!("  (no response body)"),
        }
    }
    Ok(())
}
