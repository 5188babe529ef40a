//! `outboxd webhooks`: list, add, enable, disable, rotate-secret, remove.
//!
//! Input is checked before the insert (the SQL CHECKs stay the last word);
//! a secret is printed only when it is made (`add`, `rotate-secret`), and
//! `list` shows health from the delivery log rather than configuration
//! alone, since "is this endpoint working" is what an admin asks first.

use anyhow::{anyhow, Result};
use outboxd_core::matching;
use serde_json::json;
use tokio_postgres::Client;

use super::table::{self, Table};
use super::{connect, parse, resolve_webhook, PgResult};
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

/// Each webhook with its last attempt, its attempts of the last hour and its
/// open deliveries; the laterals read the (webhook_id, started_at) index.
const LIST: &str = "
SELECT w.id, w.name, w.url, w.event_types, w.enabled, w.disabled_reason,
       last.started_at, last.outcome,
       h.attempts, h.delivered,
       (SELECT count(*) FROM outbox.deliveries d
         WHERE d.webhook_id = w.id AND d.state IN ('pending', 'in_flight')) AS pending,
       CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_secret_expires_at END,
       extract(epoch FROM now() - last.started_at)::float8,
       w.headers, w.created_at,
       wh.failing_since, CASE WHEN wh.paused_until > now() THEN wh.paused_until END
  FROM outbox.webhooks w
  LEFT JOIN outbox.webhook_health wh ON wh.webhook_id = w.id
  LEFT JOIN LATERAL (
        SELECT a.started_at, a.outcome FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id ORDER BY a.started_at DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS attempts, count(*) FILTER (WHERE a.outcome = 'delivered') AS delivered
          FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id AND a.started_at > now() - interval '1 hour') h ON true
 ORDER BY w.id";

async fn list(args: ListArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let rows = client.query(LIST, &[]).await.pg()?;
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                let attempts: i64 = r.get(8);
                let delivered: i64 = r.get(9);
                json!({
                    "id": r.get::<_, i64>(0),
                    "name": r.get::<_, String>(1),
                    "url": r.get::<_, String>(2),
                    "event_types": r.get::<_, Vec<String>>(3),
                    "enabled": r.get::<_, bool>(4),
                    "disabled_reason": r.get::<_, Option<String>>(5),
                    "headers": r.get::<_, serde_json::Value>(13),
                    "created_at": table::rfc3339(r.get(14)),
                    "last_attempt_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(6).map(table::rfc3339),
                    "last_outcome": r.get::<_, Option<String>>(7),
                    "attempts_last_hour": attempts,
                    "delivered_last_hour": delivered,
                    "success_rate_last_hour": (attempts > 0).then(|| delivered as f64 / attempts as f64),
                    "pending": r.get::<_, i64>(10),
                    "previous_secret_expires_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(11).map(table::rfc3339),
                    "failing_since": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(15).map(table::rfc3339),
                    "paused_until": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(16).map(table::rfc3339),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "URL",
        "EVENTS",
        "ENABLED",
        "LAST DELIVERY",
        "SUCCESS 1H",
        "PENDING",
    ]);
    for r in &rows {
        let paused: Option<chrono::DateTime<chrono::Utc>> = r.get(16);
        let failing: Option<chrono::DateTime<chrono::Utc>> = r.get(15);
        let enabled = if r.get(4) {
            match (paused, failing) {
                (Some(until), _) => format!("paused until {}", table::rfc3339(until)),
                (None, Some(since)) => format!("yes (failing since {})", table::rfc3339(since)),
                (None, None) => "yes".to_owned(),
            }
        } else {
            match r.get::<_, Option<String>>(5) {
                Some(reason) => format!("no ({reason})"),
                None => "no".to_owned(),
            }
        };
        let last = match (r.get::<_, Option<f64>>(12), r.get::<_, Option<String>>(7)) {
            (Some(ago), Some(outcome)) => format!("{} ago, {outcome}", table::age(ago)),
            _ => "never".to_owned(),
        };
        let (attempts, delivered): (i64, i64) = (r.get(8), r.get(9));
        let success = if attempts == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.0}% of {attempts}",
                100.0 * delivered as f64 / attempts as f64
            )
        };
        t.row(vec![
            r.get::<_, i64>(0).to_string(),
            r.get(1),
            r.get(2),
            r.get::<_, Vec<String>>(3).join(","),
            enabled,
            last,
            success,
            r.get::<_, i64>(10).to_string(),
        ]);
    }
    if t.is_empty() {
        println!("No webhooks yet. Add one: outboxd webhooks add --name NAME --url URL --events 'payment.*'");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

const ADD: &str = "
INSERT INTO outbox.webhooks (name, url, event_types, headers)
VALUES ($1, $2, $3, $4)
RETURNING id, secret";

async fn add(args: WebhookAddArgs) -> Result<()> {
    let name = args.name.trim();
    if name.is_empty() {
        return Err(anyhow!("--name must not be blank"));
    }
    parse::url(&args.url).map_err(|e| anyhow!(e))?;
    let patterns = parse::patterns(&args.events).map_err(|e| anyhow!(e))?;
    let headers = serde_json::Value::Object(parse::headers(&args.headers).map_err(|e| anyhow!(e))?);
    let client = connect(&args.db).await?;
    warn_about_uncatalogued(&client, &patterns).await?;
    let row = client
        .query_one(ADD, &[&name, &args.url, &patterns, &headers])
        .await
        .pg()?;
    let (id, secret): (i64, String) = (row.get(0), row.get(1));
    if args.json {
        let out = json!({"id": id, "name": name, "url": args.url, "event_types": patterns, "headers": headers, "secret": secret});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Added webhook {id} {name:?}: {} for {}",
        args.url,
        patterns.join(", ")
    );
    println!("Secret (shown only this once; the receiver verifies signatures with it):");
    println!("  {secret}");
    Ok(())
}

/// Webhooks may subscribe to types the catalog does not list (it documents,
/// it does not gate), but a pattern that matches nothing there is most often
/// a typo, and a typo means events silently never arrive.
async fn warn_about_uncatalogued(client: &Client, patterns: &[String]) -> Result<()> {
    let catalog: Vec<String> = client
        .query("SELECT name FROM outbox.event_types", &[])
        .await
        .pg()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for p in patterns.iter().filter(|p| *p != matching::MATCH_ALL) {
        if !catalog.iter().any(|t| matching::pattern_matches(p, t)) {
            eprintln!(
                "warning: {p:?} matches no event type in the catalog; check the spelling (`outboxd event-types list`)"
            );
        }
    }
    Ok(())
}

async fn enable(args: WebhookRefArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    if hook.enabled {
        println!("{hook} is enabled already");
        return Ok(());
    }
    client
        .execute(
            "UPDATE outbox.webhooks SET enabled = true, disabled_reason = NULL, disabled_at = NULL WHERE id = $1",
            &[&hook.id],
        )
        .await
        .pg()?;
    println!("{hook} enabled: new events reach it again (earlier cancelled deliveries stay cancelled; `outboxd replay` sends them)");
    Ok(())
}

async fn disable(args: WebhookDisableArgs) -> Result<()> {
    let mut client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    if !hook.enabled {
        println!("{hook} is disabled already");
        return Ok(());
    }
    // The trigger on `enabled` cancels the waiting deliveries in this same
    // transaction, stamped with its now(): that is how they are counted.
    let tx = client.transaction().await.pg()?;
    tx.execute(
        "UPDATE outbox.webhooks SET enabled = false, disabled_reason = $2, disabled_at = now() WHERE id = $1",
        &[&hook.id, &args.reason],
    )
    .await
    .pg()?;
    let cancelled = cancelled_now(&tx, hook.id).await?;
    tx.commit().await.pg()?;
    println!("{hook} disabled; {cancelled} waiting deliveries cancelled");
    Ok(())
}

async fn cancelled_now(tx: &tokio_postgres::Transaction<'_>, id: i64) -> Result<i64> {
    Ok(tx
        .query_one(
            "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = $1 AND state = 'cancelled' AND updated_at = now()",
            &[&id],
        )
        .await
        .pg()?
        .get(0))
}

async fn rotate(args: WebhookRotateArgs) -> Result<()> {
    let overlap = parse::duration_or_zero("--overlap", &args.overlap).map_err(|e| anyhow!(e))?;
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let secret: String = client
        .query_one(
            "SELECT outbox.rotate_secret($1, make_interval(secs => $2::float8))",
            &[&hook.id, &overlap.as_secs_f64()],
        )
        .await
        .pg()?
        .get(0);
    let until: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT previous_secret_expires_at FROM outbox.webhooks WHERE id = $1",
            &[&hook.id],
        )
        .await
        .pg()?
        .get(0);
    println!("New secret for {hook} (shown only this once):");
    println!("  {secret}");
    match until {
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
    let tx = client.transaction().await.pg()?;
    tx.execute("DELETE FROM outbox.webhooks WHERE id = $1", &[&hook.id])
        .await
        .pg()?;
    let cancelled = cancelled_now(&tx, hook.id).await?;
    tx.commit().await.pg()?;
    println!("{hook} removed; {cancelled} waiting deliveries cancelled (the delivery log keeps its attempts)");
    Ok(())
}
