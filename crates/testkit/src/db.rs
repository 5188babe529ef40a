//! A fresh database per test, copied from a migrated template.
//!
//! The template's name carries a hash of the migrations the binary embeds, so a changed schema
//! gets a new template and a stale one is never reused. Test binaries run in
//! parallel: an advisory lock makes one of them build the template while the
//! others wait, and the template is built under a temporary name and renamed,
//! so nobody copies a half-migrated one.

use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Config, NoTls};

pub const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server the tests use: `OUTBOXD_TEST_DATABASE_URL` or the local one.
pub fn server_url() -> String {
    std::env::var("OUTBOXD_TEST_DATABASE_URL").unwrap_or_else(|_| SERVER_URL.to_owned())
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub config: Config,
    server: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e} (is PostgreSQL running?)"));
    tokio::spawn(conn);
    client
}

fn with_db(server: &str, db: &str) -> String {
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(server);
    format!("{base}/{db}")
}

fn template_name() -> String {
    // The migrations this binary applies, not the directory's files: a test
    // binary built before a migration was added must not name (and then
    // fill) the template of the schema with it.
    let mut h = Sha256::new();
    for (version, name, checksum) in outboxd_db::migrate::embedded() {
        h.update(format!("{version}:{name}:{checksum}\n").as_bytes());
    }
    let hex: String = h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("outboxd_tpl_{hex}")
}

impl TestDb {
    /// A new, migrated, empty database for one test, on the shared server.
    pub async fn new() -> TestDb {
        Self::on(&server_url()).await
    }

    /// The same on another server (`postgres://.../postgres`), such as a
    /// cluster of a test's own; the template is made there on first use.
    pub async fn on(server: &str) -> TestDb {
        let server = server.to_owned();
        let admin = connect(&server).await;
        let template = template_name();
        admin
            .execute("SELECT pg_advisory_lock(4242)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .await
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap();
            let config: Config = with_db(&server, &building).parse().unwrap();
            outboxd_db::migrate::run(&config)
                .await
                .expect("migrating the template");
            admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .unwrap();
        }
        admin
            .execute("SELECT pg_advisory_unlock(4242)", &[])
            .await
            .unwrap();
        let name = format!(
            "outboxd_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        // Copies from one template can collide briefly; try again.
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                }
                Err(e) => panic!("creating test database {name}: {e}"),
            }
        }
        let url = with_db(&server, &name);
        TestDb {
            config: url.parse().unwrap(),
            name,
            url,
            server,
        }
    }

    /// A new connection to this test's database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("OUTBOXD_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside or outside a runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&server, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Adds a webhook; returns its id and secret.
pub async fn add_webhook(
    client: &Client,
    name: &str,
    url: &str,
    patterns: &[&str],
) -> (i64, String) {
    let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    // The plain INSERT applications use; the secret it generated is in
    // outbox.webhook_secrets.
    let id: i64 = client
        .query_one(
            "INSERT INTO outbox.webhooks (name, url, event_types) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &url, &patterns],
        )
        .await
        .expect("adding a webhook")
        .get(0);
    let secret = client
        .query_one(
            "SELECT secret FROM outbox.webhook_secrets WHERE webhook_id = $1",
            &[&id],
        )
        .await
        .expect("reading the webhook's secret")
        .get(0);
    (id, secret)
}

/// Publishes `n` events of one type in one transaction; payloads are `{"n": i}`.
pub async fn publish_many(client: &Client, event_type: &str, n: i64) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT $1, jsonb_build_object('n', i) FROM generate_series(1, $2::int8) AS i",
            &[&event_type, &n],
        )
        .await
        .expect("publishing events");
}

/// The types of the events in `outbox.undispatched_events` (the backlog),
/// sorted.
pub async fn backlog_types(client: &Client) -> Vec<String> {
    let mut types: Vec<String> = client
        .query("SELECT event_type FROM outbox.undispatched_events", &[])
        .await
        .expect("reading the backlog")
        .iter()
        .map(|r| r.get(0))
        .collect();
    types.sort();
    types
}

/// Counts rows: `SELECT count(*) FROM ...` with the given query.
pub async fn count(client: &Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// Waits until no session but `client`'s is connected to its database. A
/// killed daemon's server sessions outlive it until they notice: a
/// statement the server had already received (a result write, say) still
/// runs and commits. What a test reads after this is what the crash left.
pub async fn wait_for_other_sessions_to_end(client: &Client) {
    let ended = crate::wait_until(std::time::Duration::from_secs(10), || async {
        count(
            client,
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'",
        )
        .await
            == 0
    })
    .await;
    assert!(ended, "other sessions were still connected after 10 s");
}
