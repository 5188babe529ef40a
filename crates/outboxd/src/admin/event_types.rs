//! `outboxd event-types`: the event catalog (outbox.event_types).
//!
//! The catalog documents event types for the people who subscribe to them
//! and supplies the payload of test events; it never gates what the
//! application publishes. `list` also counts the enabled webhooks each type
//! reaches, matched with the same rules as the dispatcher.

use anyhow::{anyhow, bail, Result};
use outboxd_core::matching;
use serde_json::json;

use super::table::{self, Table};
use super::{connect, parse, PgResult};
use crate::config::{EventTypeAddArgs, EventTypeRemoveArgs, EventTypesCommand, ListArgs};

pub async fn run(command: EventTypesCommand) -> Result<()> {
    match command {
        EventTypesCommand::List(args) => list(args).await,
        EventTypesCommand::Add(args) => add(args).await,
        EventTypesCommand::Remove(args) => remove(args).await,
    }
}

const LIST: &str = "
SELECT name, description, example_payload, example_payload::text
  FROM outbox.event_types
 ORDER BY name";

const PATTERNS: &str = "SELECT event_types FROM outbox.webhooks WHERE enabled";

async fn list(args: ListArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let rows = client.query(LIST, &[]).await.pg()?;
    let webhooks: Vec<Vec<String>> = client
        .query(PATTERNS, &[])
        .await
        .pg()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let subscribers = |name: &str| {
        webhooks
            .iter()
            .filter(|p| matching::any_matches(p.iter().map(String::as_str), name))
            .count()
    };
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                json!({
                    "name": name,
                    "description": r.get::<_, String>(1),
                    "example_payload": r.get::<_, serde_json::Value>(2),
                    "subscribed_webhooks": subscribers(&name),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "DESCRIPTION", "EXAMPLE", "WEBHOOKS"]);
    for r in &rows {
        let name: String = r.get(0);
        let n = subscribers(&name);
        t.row(vec![
            name,
            r.get(1),
            table::cut(r.get::<_, &str>(3), 40),
            n.to_string(),
        ]);
    }
    if t.is_empty() {
        println!("The catalog is empty. Add a type: outboxd event-types add payment.received --description '...' --example '{{\"amount\": 100}}'");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

/// A new entry; with --replace an existing one is updated, keeping its
/// example when no new one is given.
const ADD: &str = "
INSERT INTO outbox.event_types AS t (name, description, example_payload)
VALUES ($1, $2, coalesce($3, '{}'::jsonb))
ON CONFLICT (name) DO UPDATE
   SET description = EXCLUDED.description,
       example_payload = coalesce($3, t.example_payload)
 WHERE $4
RETURNING (xmax = 0) AS inserted";

async fn add(args: EventTypeAddArgs) -> Result<()> {
    parse::event_type(&args.name).map_err(|e| anyhow!(e))?;
    let example = args
        .example
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| anyhow!("--example is not valid JSON: {e}"))?;
    let client = connect(&args.db).await?;
    let row = client
        .query_opt(
            ADD,
            &[&args.name, &args.description, &example, &args.replace],
        )
        .await
        .pg()?;
    match row {
        None => bail!(
            "event type {} is in the catalog already; add --replace to update it",
            args.name
        ),
        Some(r) if r.get::<_, bool>(0) => println!("Added {} to the catalog", args.name),
        Some(_) => println!("Updated {} in the catalog", args.name),
    }
    Ok(())
}

async fn remove(args: EventTypeRemoveArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let n = client
        .execute(
            "DELETE FROM outbox.event_types WHERE name = $1",
            &[&args.name],
        )
        .await
        .pg()?;
    if n == 0 {
        bail!("event type {:?} is not in the catalog", args.name);
    }
    println!(
        "Removed {} from the catalog (webhooks subscribed to it still receive its events)",
        args.name
    );
    Ok(())
}
