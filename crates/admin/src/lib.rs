//! The admin operations of outboxd, one function each, over the SQL surface
//! of docs/architecture.md: webhooks, the event catalog, test events, the delivery log,
//! replays and stats. The CLI prints what they return and the console renders
//! it as HTML or JSON, so every operation has exactly one implementation.
//!
//! Input is checked here before any write (`validate`); the SQL CHECKs stay
//! the last word. Errors say which kind of problem it is, so a caller can
//! answer 400, 404 or 409 without parsing messages.

pub mod deliveries;
pub mod event_types;
pub mod format;
pub mod json;
pub mod keys;
pub mod portal;
pub mod replay;
pub mod stats;
pub mod tenants;
pub mod test_event;
pub mod validate;
pub mod webhooks;

use chrono::{DateTime, Utc};
use thiserror::Error;
use tokio_postgres::Client;

/// What went wrong, by what the caller can do about it.
#[derive(Debug, Error)]
pub enum Error {
    /// The input is wrong; the message says which field and why.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the current state refuses it.
    #[error("{0}")]
    Conflict(String),
    /// The database refused or could not be reached.
    #[error("{}", db_message(.0))]
    Database(#[from] tokio_postgres::Error),
    /// No database connection could be had (the pool timed out or the
    /// database is unreachable).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Setting up the HTTP client for a test event failed.
    #[error("setting up the HTTP client: {0}")]
    Http(String),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// A CHECK or data error of the database is the caller's input too.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Invalid { .. } => true,
            Error::Database(e) => e.code().is_some_and(|c| {
                let code = c.code();
                code.starts_with("22") || code.starts_with("23")
            }),
            _ => false,
        }
    }
}

/// tokio-postgres prints a server error as "db error" and repeats it as its
/// source; people need the server's message (and its hint) once.
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.hint() {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A webhook as the operations name it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookRef {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
}

impl std::fmt::Display for WebhookRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "webhook {} {:?}", self.id, self.name)
    }
}

const WEBHOOK_BY_ID: &str = "SELECT id, name, enabled FROM outbox.webhooks WHERE id = $1";
const WEBHOOKS_BY_NAME: &str =
    "SELECT id, name, enabled FROM outbox.webhooks WHERE name = $1 ORDER BY id";

fn row_to_ref(r: &tokio_postgres::Row) -> WebhookRef {
    WebhookRef {
        id: r.get(0),
        name: r.get(1),
        enabled: r.get(2),
    }
}

/// The webhook with this id.
pub async fn webhook_by_id(client: &Client, id: i64) -> Result<WebhookRef> {
    client
        .query_opt(WEBHOOK_BY_ID, &[&id])
        .await?
        .map(|r| row_to_ref(&r))
        .ok_or_else(|| Error::NotFound(format!("no webhook with id {id}")))
}

/// Finds a webhook by id, or else by name. Names are free text and need not
/// be unique, so an ambiguous name is refused with the candidate ids.
pub async fn resolve_webhook(client: &Client, given: &str) -> Result<WebhookRef> {
    let given = given.trim();
    if let Ok(id) = given.parse::<i64>() {
        if let Some(row) = client.query_opt(WEBHOOK_BY_ID, &[&id]).await? {
            return Ok(row_to_ref(&row));
        }
    }
    let rows = client.query(WEBHOOKS_BY_NAME, &[&given]).await?;
    match rows.as_slice() {
        [row] => Ok(row_to_ref(row)),
        [] if given.parse::<i64>().is_ok() => Err(Error::NotFound(format!(
            "no webhook with id {given}; `outboxd webhooks list` shows the webhooks"
        ))),
        [] => Err(Error::NotFound(format!(
            "no webhook named {given:?}; `outboxd webhooks list` shows the webhooks"
        ))),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|r| r.get::<_, i64>(0).to_string())
                .collect();
            Err(Error::invalid(
                "webhook",
                format!(
                    "{} webhooks are named {given:?} (ids {}); give the id instead",
                    many.len(),
                    ids.join(", ")
                ),
            ))
        }
    }
}

/// Turns a `since` into a time by the database's clock, so "1h" means the
/// same to the caller as to `now()` in the rows it filters.
pub async fn since_time(client: &Client, since: &validate::Since) -> Result<DateTime<Utc>> {
    match since {
        validate::Since::At(t) => Ok(*t),
        validate::Since::Ago(d) => Ok(client
            .query_one(
                "SELECT now() - make_interval(secs => $1::float8)",
                &[&d.as_secs_f64()],
            )
            .await?
            .get(0)),
    }
}
