//! The schema, embedded from `migrations/` and applied with refinery.
//!
//! Several replicas may start at once: the runner holds a session advisory
//! lock while it migrates, so one applies the migrations and the others wait
//! and then find nothing to do.

use tokio_postgres::NoTls;

use crate::Error;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Advisory lock key: "outboxd" in ASCII, so it is recognisable in pg_locks.
const MIGRATION_LOCK: i64 = 0x6f7574626f7864;

/// The newest migration version the binary carries; `/readyz` compares it
/// with what the database has.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The migrations the binary carries, as (version, name, checksum): what a
/// database migrated by this binary has applied.
pub fn embedded() -> Vec<(i32, String, u64)> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (m.version(), m.name().to_owned(), m.checksum()))
        .collect()
}

/// Applies every migration not applied yet; returns how many were applied.
pub async fn run(config: &tokio_postgres::Config) -> Result<usize, Error> {
    let (mut client, connection) = quiet(config).connect(NoTls).await?;
    let conn = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .set_migration_table_name("outbox_schema_history")
        .run_async(&mut client)
        .await;
    // The lock goes with the session anyway; unlocking is for tidiness.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = conn.await;
    Ok(report?.applied_migrations().len())
}

/// The session for migrating, with notices off: refinery creates its
/// history table with `CREATE TABLE IF NOT EXISTS`, and PostgreSQL's NOTICE
/// that it exists would otherwise be logged at every start. Warnings and
/// errors still come through.
fn quiet(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c client_min_messages=warning"),
        _ => "-c client_min_messages=warning".to_owned(),
    };
    config.options(options);
    config
}

/// The version the database is at, or 0 when it was never migrated.
pub async fn current_version(client: &tokio_postgres::Client) -> Result<i32, Error> {
    const Q: &str = "SELECT coalesce(max(version), 0)::int4 FROM outbox_schema_history";
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('outbox_schema_history') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one(Q, &[]).await?.get(0))
}
