//! The admin CLI: webhooks, the event catalog, test events, the delivery
//! log, replays and stats, each a thin layer over the SQL surface of
//! DESIGN.md so that what the CLI does, an admin can also do in psql.
//!
//! Every command connects once, checks that the schema is current (a clear
//! "run `outboxd migrate`" beats a missing-column error), and reports a
//! failure as one line through `main`.

pub mod deliveries;
pub mod event_types;
pub mod parse;
pub mod replay;
pub mod stats;
pub mod table;
pub mod test_event;
pub mod webhooks;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use outboxd_poller::{connect as pgconnect, migrate};
use tokio_postgres::{Client, NoTls};

use crate::config::DbArgs;

/// Connects to the database of `DATABASE_URL` / `--database-url` (or the
/// libpq variables) and checks the schema version.
pub async fn connect(db: &DbArgs) -> Result<Client> {
    let pg = pgconnect::pg_config(db.database_url.as_deref())
        .context("reading DATABASE_URL / PG* variables")?;
    let where_ = pgconnect::describe(&pg);
    let (client, conn) = pg
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to the database at {where_}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let have = migrate::current_version(&client)
        .await
        .with_context(|| format!("reading the schema version at {where_}"))?;
    let want = migrate::latest_version();
    if have < want {
        bail!("the database at {where_} is at schema version {have}, this command needs {want}: run `outboxd migrate`");
    }
    Ok(client)
}

/// tokio-postgres prints a server error as "db error" and repeats it as its
/// source; people need the server's message (and its hint) once.
pub trait PgResult<T> {
    fn pg(self) -> Result<T>;
}

impl<T> PgResult<T> for Result<T, tokio_postgres::Error> {
    fn pg(self) -> Result<T> {
        self.map_err(|e| match e.as_db_error() {
            Some(db) => match db.hint() {
                Some(hint) => anyhow!("{} ({hint})", db.message()),
                None => anyhow!("{}", db.message()),
            },
            None => anyhow!(e),
        })
    }
}

/// A webhook as the commands name it.
#[derive(Debug, Clone)]
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

/// Finds a webhook by id, or else by name. Names are free text and need not
/// be unique, so an ambiguous name is refused with the candidate ids.
pub async fn resolve_webhook(client: &Client, given: &str) -> Result<WebhookRef> {
    let given = given.trim();
    let row_to_ref = |r: &tokio_postgres::Row| WebhookRef {
        id: r.get(0),
        name: r.get(1),
        enabled: r.get(2),
    };
    if let Ok(id) = given.parse::<i64>() {
        if let Some(row) = client.query_opt(WEBHOOK_BY_ID, &[&id]).await.pg()? {
            return Ok(row_to_ref(&row));
        }
    }
    let rows = client.query(WEBHOOKS_BY_NAME, &[&given]).await.pg()?;
    match rows.as_slice() {
        [row] => Ok(row_to_ref(row)),
        [] if given.parse::<i64>().is_ok() => {
            bail!("no webhook with id {given}; `outboxd webhooks list` shows the webhooks")
        }
        [] => bail!("no webhook named {given:?}; `outboxd webhooks list` shows the webhooks"),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|r| r.get::<_, i64>(0).to_string())
                .collect();
            bail!(
                "{} webhooks are named {given:?} (ids {}); give the id instead",
                many.len(),
                ids.join(", ")
            )
        }
    }
}

/// Turns `--since` into a time by the database's clock, so "1h" means the
/// same to the CLI as to `now()` in the rows it filters.
pub async fn since_time(client: &Client, since: &parse::Since) -> Result<DateTime<Utc>> {
    match since {
        parse::Since::At(t) => Ok(*t),
        parse::Since::Ago(d) => Ok(client
            .query_one(
                "SELECT now() - make_interval(secs => $1::float8)",
                &[&d.as_secs_f64()],
            )
            .await
            .pg()?
            .get(0)),
    }
}
