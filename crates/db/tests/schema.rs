//! `crates/db/schema.sql` is the schema every migration adds up to, as
//! `pg_dump --schema-only` prints it for a freshly migrated database: one
//! readable file where a reader finds `outbox.next_events` or the insert
//! trigger without reading the migrations in order. This test keeps it true;
//! `OUTBOXD_WRITE_SCHEMA=1 cargo test -p outboxd-db --test schema` rewrites it
//! after a new migration.

use std::path::Path;
use std::process::Command;

use outboxd_testkit::TestDb;

/// The dump without what changes from one server or run to the next: the
/// header comments naming versions, and `SET`/`SELECT pg_catalog` session
/// lines.
fn normalized(dump: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in dump.lines() {
        let skip = line.starts_with("-- Dumped from")
            || line.starts_with("-- Dumped by")
            || line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict");
        if skip {
            continue;
        }
        if line.is_empty() {
            if blank {
                continue;
            }
            blank = true;
        } else {
            blank = false;
        }
        out.push_str(&without_cutover(line));
        out.push('\n');
    }
    out.trim().to_owned() + "\n"
}

/// The partition made of the log from before V14 ends at the time the
/// migration ran: written as `<cut-over>`, so the file does not change with it.
fn without_cutover(line: &str) -> String {
    if !line.contains("delivery_attempts_before_v14") {
        return line.to_owned();
    }
    let mut parts: Vec<&str> = line.split('\'').collect();
    for (i, part) in parts.iter_mut().enumerate() {
        if i % 2 == 1 && part.starts_with(|c: char| c.is_ascii_digit()) {
            *part = "<cut-over>";
        }
    }
    parts.join("'")
}

#[tokio::test]
async fn schema_sql_is_what_the_migrations_make() {
    let db = TestDb::new().await;
    let dump = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--schema=outbox",
            "--dbname",
            &db.url,
        ])
        .output()
        .expect("running pg_dump (Debian's postgresql-client)");
    assert!(
        dump.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let header = "-- The outbox schema as the migrations in crates/db/migrations leave it\n\
                  -- (pg_dump --schema-only --schema=outbox, owners and grants left out;\n\
                  -- deploy/postgres/roles.sql has the roles). Generated: do not edit;\n\
                  -- OUTBOXD_WRITE_SCHEMA=1 cargo test -p outboxd-db --test schema rewrites it.\n\n";
    let want = format!(
        "{header}{}",
        normalized(&String::from_utf8_lossy(&dump.stdout))
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.sql");
    if std::env::var_os("OUTBOXD_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &want).expect("writing schema.sql");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "crates/db/schema.sql is not what the migrations make; after changing a migration run\n  \
         OUTBOXD_WRITE_SCHEMA=1 cargo test -p outboxd-db --test schema\nand commit the file"
    );
}
