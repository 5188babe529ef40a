//! The event catalog (outbox.event_types): list, one, add or update, remove.
//!
//! The catalog documents event types for the people who subscribe to them
//! and supplies the payload of test events; it never gates what the
//! application publishes. The list counts the enabled webhooks each type
//! reaches, matched with the same rules as the dispatcher.

use outboxd_core::matching;
use serde::Serialize;
use tokio_postgres::Client;

use crate::json::StoredJson;
use crate::{validate, Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub example_payload: StoredJson,
    pub subscribed_webhooks: usize,
}

const LIST: &str = "
SELECT name, description, example_payload::text
  FROM outbox.event_types
 WHERE ($1::text IS NULL OR name = $1)
 ORDER BY name";

const PATTERNS: &str = "SELECT event_types FROM outbox.webhooks WHERE enabled";

async fn query(client: &Client, name: Option<&str>) -> Result<Vec<EventType>> {
    let rows = client.query(LIST, &[&name]).await?;
    let webhooks: Vec<Vec<String>> = client
        .query(PATTERNS, &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let subscribed_webhooks = webhooks
                .iter()
                .filter(|p| matching::any_matches(p.iter().map(String::as_str), &name))
                .count();
            EventType {
                name,
                description: r.get(1),
                example_payload: StoredJson::from_text(r.get(2)),
                subscribed_webhooks,
            }
        })
        .collect())
}

/// The whole catalog, by name.
pub async fn list(client: &Client) -> Result<Vec<EventType>> {
    query(client, None).await
}

/// One entry.
pub async fn get(client: &Client, name: &str) -> Result<EventType> {
    query(client, Some(name))
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("event type {name:?} is not in the catalog")))
}

/// Whether `upsert` added or updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upserted {
    Added,
    Updated,
}

/// A new entry; with `replace` an existing one is updated, keeping its
/// example when no new one is given.
const ADD: &str = "
INSERT INTO outbox.event_types AS t (name, description, example_payload)
VALUES ($1, $2, coalesce($3, '{}'::jsonb))
ON CONFLICT (name) DO UPDATE
   SET description = EXCLUDED.description,
       example_payload = coalesce($3, t.example_payload)
 WHERE $4
RETURNING (xmax = 0) AS inserted";

/// Adds an event type, or with `replace` updates it.
pub async fn upsert(
    client: &Client,
    name: &str,
    description: &str,
    example: Option<&serde_json::Value>,
    replace: bool,
) -> Result<Upserted> {
    validate::event_type(name)?;
    let row = client
        .query_opt(ADD, &[&name, &description, &example, &replace])
        .await?;
    match row {
        None => Err(Error::Conflict(format!(
            "event type {name} is in the catalog already"
        ))),
        Some(r) if r.get::<_, bool>(0) => Ok(Upserted::Added),
        Some(_) => Ok(Upserted::Updated),
    }
}

/// Removes an entry (webhooks subscribed to it still receive its events).
pub async fn remove(client: &Client, name: &str) -> Result<()> {
    let n = client
        .execute("DELETE FROM outbox.event_types WHERE name = $1", &[&name])
        .await?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "event type {name:?} is not in the catalog"
        )));
    }
    Ok(())
}
