//! The admin CLI: webhooks, the event catalog, test events, the delivery
//! log, replays and stats, each a thin layer over the SQL surface of
//! docs/architecture.md so that what the CLI does, an admin can also do in psql.
//!
//! Every command connects once, checks that the schema is current (a clear
//! "run `outboxd migrate`" beats a missing-column error), and reports a
//! failure as one line through `main`.

pub mod deliveries;
pub mod event_types;
pub mod keys;
pub mod parse;
pub mod portal;
pub mod replay;
pub mod stats;
pub mod table;
pub mod test_event;
pub mod webhooks;

use anyhow::{bail, Context, Result};
use outboxd_db::{connect as pgconnect, migrate};
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

pub use outboxd_admin::{resolve_webhook, since_time};
