//! `outboxd deliveries`: the recent delivery log, filtered, and
//! `deliveries show <id>`: one delivery with every attempt and the stored
//! response bodies. Both read what an admin could read with SQL
//! (outbox.delivery_log, outbox.deliveries), nothing the CLI alone knows.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::table::{self, Table};
use super::{connect, parse, resolve_webhook, since_time, PgResult};
use crate::config::{DeliveriesArgs, DeliveriesCommand, DeliveriesFilter, DeliveryShowArgs};

pub async fn run(args: DeliveriesArgs) -> Result<()> {
    match args.command {
        Some(DeliveriesCommand::Show(show_args)) => show(show_args).await,
        None => list(args.filter).await,
    }
}

/// Unset filters are NULL; each query is planned with its actual values, so
/// the unused conditions fold away.
const LOG: &str = "
SELECT started_at, delivery_id, webhook_id, webhook_name, event_id, event_type, attempt,
       outcome, status_code, error, duration_ms, delivery_state, is_test
  FROM outbox.delivery_log
 WHERE ($1::int8 IS NULL OR webhook_id = $1)
   AND ($2::text IS NULL OR delivery_state = $2)
   AND ($3::text IS NULL OR event_type = $3)
   AND ($4::timestamptz IS NULL OR started_at >= $4)
 ORDER BY attempt_id DESC
 LIMIT $5";

async fn list(f: DeliveriesFilter) -> Result<()> {
    let since = f
        .since
        .as_deref()
        .map(parse::since)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    if let Some(t) = &f.event_type {
        parse::event_type(t).map_err(|e| anyhow!(e))?;
    }
    let client = connect(&f.db).await?;
    let webhook = match &f.webhook {
        Some(w) => Some(resolve_webhook(&client, w).await?.id),
        None => None,
    };
    let since = match &since {
        Some(s) => Some(since_time(&client, s).await?),
        None => None,
    };
    let state = f.state.map(|s| s.as_str());
    let rows = client
        .query(
            LOG,
            &[&webhook, &state, &f.event_type, &since, &(f.limit as i64)],
        )
        .await
        .pg()?;
    if f.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "started_at": table::rfc3339(r.get(0)),
                    "delivery_id": r.get::<_, i64>(1),
                    "webhook_id": r.get::<_, i64>(2),
                    "webhook_name": r.get::<_, Option<String>>(3),
                    "event_id": r.get::<_, i64>(4),
                    "event_type": r.get::<_, Option<String>>(5),
                    "attempt": r.get::<_, i32>(6),
                    "outcome": r.get::<_, String>(7),
                    "status_code": r.get::<_, Option<i32>>(8),
                    "error": r.get::<_, Option<String>>(9),
                    "duration_ms": r.get::<_, f64>(10),
                    "delivery_state": r.get::<_, Option<String>>(11),
                    "is_test": r.get::<_, bool>(12),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
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
    for r in &rows {
        let webhook = match r.get::<_, Option<String>>(3) {
            Some(name) => format!("{} {name}", r.get::<_, i64>(2)),
            None => format!("{} (removed)", r.get::<_, i64>(2)),
        };
        let mut event_type = r.get::<_, Option<String>>(5).unwrap_or_else(|| "?".into());
        if r.get(12) {
            event_type.push_str(" (test)");
        }
        t.row(vec![
            table::time(r.get(0)),
            r.get::<_, i64>(1).to_string(),
            webhook,
            event_type,
            r.get::<_, i32>(6).to_string(),
            status_or_error(r.get(8), r.get(9)),
            format!("{:.1}", r.get::<_, f64>(10)),
            r.get(7),
            r.get::<_, Option<String>>(11).unwrap_or_else(|| "-".into()),
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

const DELIVERY: &str = "
SELECT d.id, d.event_id, d.webhook_id, w.name, w.url, e.event_type, e.payload::text,
       e.created_at, coalesce(e.is_test, false), d.state, d.attempts, d.next_attempt_at,
       d.last_status, d.last_error, d.created_at, d.delivered_at
  FROM outbox.deliveries d
  LEFT JOIN outbox.webhooks w ON w.id = d.webhook_id
  LEFT JOIN outbox.events e ON e.id = d.event_id
 WHERE d.id = $1";

const ATTEMPTS: &str = "
SELECT attempt, started_at, duration_ms, status_code, error, outcome, response_body
  FROM outbox.delivery_attempts
 WHERE delivery_id = $1
 ORDER BY id";

async fn show(args: DeliveryShowArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let Some(d) = client.query_opt(DELIVERY, &[&args.id]).await.pg()? else {
        bail!(
            "no delivery with id {}; `outboxd deliveries` lists recent ones",
            args.id
        );
    };
    let attempts = client.query(ATTEMPTS, &[&args.id]).await.pg()?;
    let state: String = d.get(9);
    let opt_time = |i: usize| d.get::<_, Option<DateTime<Utc>>>(i);
    if args.json {
        let payload: Option<serde_json::Value> = d
            .get::<_, Option<&str>>(6)
            .and_then(|p| serde_json::from_str(p).ok());
        let out = json!({
            "id": d.get::<_, i64>(0),
            "event_id": d.get::<_, i64>(1),
            "webhook_id": d.get::<_, i64>(2),
            "webhook_name": d.get::<_, Option<String>>(3),
            "webhook_url": d.get::<_, Option<String>>(4),
            "event_type": d.get::<_, Option<String>>(5),
            "payload": payload,
            "event_created_at": opt_time(7).map(table::rfc3339),
            "is_test": d.get::<_, bool>(8),
            "state": state,
            "attempts": d.get::<_, i32>(10),
            "next_attempt_at": table::rfc3339(d.get(11)),
            "last_status": d.get::<_, Option<i32>>(12),
            "last_error": d.get::<_, Option<String>>(13),
            "created_at": table::rfc3339(d.get(14)),
            "delivered_at": opt_time(15).map(table::rfc3339),
            "attempt_log": attempts.iter().map(|a| json!({
                "attempt": a.get::<_, i32>(0),
                "started_at": table::rfc3339(a.get(1)),
                "duration_ms": a.get::<_, f64>(2),
                "status_code": a.get::<_, Option<i32>>(3),
                "error": a.get::<_, Option<String>>(4),
                "outcome": a.get::<_, String>(5),
                "response_body": a.get::<_, Option<String>>(6),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Delivery {}: {state} after {} attempt(s)",
        args.id,
        d.get::<_, i32>(10)
    );
    let webhook = match (d.get::<_, Option<String>>(3), d.get::<_, Option<String>>(4)) {
        (Some(name), Some(url)) => format!("{} {name:?} {url}", d.get::<_, i64>(2)),
        _ => format!("{} (removed)", d.get::<_, i64>(2)),
    };
    println!("  webhook       {webhook}");
    let test = if d.get(8) { " (test)" } else { "" };
    println!(
        "  event         {} {}{test}, created {} UTC",
        d.get::<_, i64>(1),
        d.get::<_, Option<String>>(5).unwrap_or_else(|| "?".into()),
        opt_time(7).map(table::time).unwrap_or_else(|| "?".into())
    );
    if let Some(p) = d.get::<_, Option<&str>>(6) {
        println!("  payload       {}", table::cut(p, 200));
    }
    match state.as_str() {
        "pending" => println!("  next attempt  {} UTC", table::time(d.get(11))),
        "delivered" => {
            if let Some(t) = opt_time(15) {
                println!("  delivered at  {} UTC", table::time(t));
            }
        }
        _ => {}
    }
    if let Some(e) = d.get::<_, Option<String>>(13) {
        println!("  last error    {e}");
    }
    if attempts.is_empty() {
        println!("No attempts yet.");
    }
    for a in &attempts {
        println!();
        println!(
            "Attempt {}  {} UTC  {:.1} ms  {}  -> {}",
            a.get::<_, i32>(0),
            table::time(a.get(1)),
            a.get::<_, f64>(2),
            status_or_error(a.get(3), a.get(4)),
            a.get::<_, String>(5)
        );
        match a.get::<_, Option<String>>(6) {
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
