//! `outboxd event-types`: the event catalog (outbox.event_types) as a
//! table, and add/remove. The queries are `outboxd_admin::event_types`,
//! shared with the console.

use anyhow::{anyhow, bail, Result};
use outboxd_admin::event_types::{self as ops, Upserted};

use super::connect;
use super::table::{self, Table};
use crate::config::{EventTypeAddArgs, EventTypeRemoveArgs, EventTypesCommand, ListArgs};

pub async fn run(command: EventTypesCommand) -> Result<()> {
    match command {
        EventTypesCommand::List(args) => list(args).await,
        EventTypesCommand::Add(args) => add(args).await,
        EventTypesCommand::Remove(args) => remove(args).await,
    }
}

async fn list(args: ListArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let types = ops::list(&client).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&types)?);
        return Ok(());
    }
    let mut t = Table::new(&["NAME", "DESCRIPTION", "EXAMPLE", "WEBHOOKS"]);
    for e in types {
        t.row(vec![
            e.name,
            e.description,
            table::cut(e.example_payload.text(), 40),
            e.subscribed_webhooks.to_string(),
        ]);
    }
    if t.is_empty() {
        println!("The catalog is empty. Add a type: outboxd event-types add payment.received --description '...' --example '{{\"amount\": 100}}'");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

async fn add(args: EventTypeAddArgs) -> Result<()> {
    outboxd_admin::validate::event_type(&args.name)?;
    let example = args
        .example
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
        .map_err(|e| anyhow!("--example is not valid JSON: {e}"))?;
    let client = connect(&args.db).await?;
    match ops::upsert(
        &client,
        &args.name,
        &args.description,
        example.as_ref(),
        args.replace,
    )
    .await
    {
        Ok(Upserted::Added) => println!("Added {} to the catalog", args.name),
        Ok(Upserted::Updated) => println!("Updated {} in the catalog", args.name),
        Err(outboxd_admin::Error::Conflict(_)) => bail!(
            "event type {} is in the catalog already; add --replace to update it",
            args.name
        ),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn remove(args: EventTypeRemoveArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    ops::remove(&client, &args.name).await?;
    println!(
        "Removed {} from the catalog (webhooks subscribed to it still receive its events)",
        args.name
    );
    Ok(())
}
