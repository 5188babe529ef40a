//! `outboxd demo`: the first look, in one command, against a local
//! PostgreSQL. It creates a demo database, migrates it, starts a sample
//! receiver in-process, adds a catalog and two webhooks (one flaky, to show
//! a retry), publishes events, runs the real pipeline until everything is
//! delivered, and prints the delivery log with a psql line to explore it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use outboxd_core::retry::RetryPolicy;
use outboxd_core::signing::Secret;
use outboxd_db::{connect, migrate, WebhookCache};
use outboxd_deliverer::Settings;
use tokio::net::TcpListener;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::config::DemoArgs;
use crate::daemon::{start_pipeline, Pipeline};

const CATALOG: &str = "
INSERT INTO outbox.event_types (name, description, example_payload) VALUES
  ('payment.received', 'A customer payment was captured.', '{\"payment_id\": \"pay_123\", \"amount\": 4200, \"currency\": \"EUR\"}'),
  ('account.created', 'A new customer account was opened.', '{\"account_id\": \"acc_42\", \"email\": \"ada@example.com\"}')";

const FIRST_WEBHOOK: &str =
    "SELECT secret FROM outbox.add_webhook('Payments service', $1, '{payment.*}')";
const SECOND_WEBHOOK: &str =
    "SELECT id FROM outbox.add_webhook('CRM (flaky)', $1, '{account.created,payment.received}')";
/// The second webhook signs with the first one's secret, so the one sample
/// receiver verifies both.
const SHARE_SECRET: &str = "UPDATE outbox.webhook_secrets SET secret = $2 WHERE webhook_id = $1";

const OPEN: &str =
    "SELECT count(*) FROM outbox.deliveries WHERE state IN ('pending', 'held', 'in_flight')";

const LOG: &str = "
SELECT to_char(started_at, 'HH24:MI:SS.MS'), webhook_name, event_type, event_id, attempt,
       coalesce(status_code::text, error), round(duration_ms::numeric, 1)::text, outcome
  FROM outbox.delivery_log
 ORDER BY attempt_id";

pub async fn run(args: DemoArgs) -> Result<()> {
    let admin = connect::pg_config(args.db.database_url.as_deref())?;
    let where_ = connect::describe(&admin);
    let (client, conn) = admin.connect(NoTls).await.with_context(|| {
        format!("connecting to PostgreSQL at {where_} (is it running? set DATABASE_URL)")
    })?;
    tokio::spawn(conn);
    if !args
        .database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--database must be letters, digits and underscores");
    }
    for statement in [
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", args.database),
        format!("CREATE DATABASE {}", args.database),
    ] {
        client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("creating the database {}", args.database))?;
    }
    let mut pg = admin.clone();
    pg.dbname(&args.database);
    println!(
        "1. Created database {} and applied the migrations.",
        args.database
    );
    migrate::run(&pg).await.context("applying migrations")?;

    let (db, conn) = pg.connect(NoTls).await?;
    tokio::spawn(conn);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    db.batch_execute(CATALOG).await?;
    let secret: String = db
        .query_one(FIRST_WEBHOOK, &[&format!("{base}/payments")])
        .await?
        .get(0);
    let second: i64 = db
        .query_one(SECOND_WEBHOOK, &[&format!("{base}/crm/flaky")])
        .await?
        .get(0);
    db.execute(SHARE_SECRET, &[&second, &secret]).await?;
    println!("2. Sample receiver on {base}; webhooks added:");
    println!("     Payments service  {base}/payments    payment.*");
    println!("     CRM (flaky)       {base}/crm/flaky   account.created, payment.received  (fails each first attempt)");

    let shutdown = CancellationToken::new();
    tokio::spawn(crate::receiver::serve(
        listener,
        Some(Secret::parse(&secret)?),
        shutdown.clone(),
    ));
    let pool = connect::connect_pool(pg.clone(), 4)?;
    let cache = WebhookCache::new();
    cache.reload(&pool).await?;
    let pipeline = start_pipeline(Pipeline {
        pg: pg.clone(),
        pool,
        fan_out_pool: connect::connect_pool(pg.clone(), 1)?,
        cache,
        settings: Settings {
            batch_size: 100,
            concurrency: 16,
            webhook_concurrency: 4,
            lease: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            retry: RetryPolicy {
                base_delay: Duration::from_secs(1),
                ..RetryPolicy::default()
            },
            shutdown_grace: Duration::from_secs(5),
            breaker: Default::default(),
            disable_failing_after: Duration::ZERO,
        },
        // The sample receiver is on loopback, which the guard refuses by default.
        targets: outboxd_deliverer::TargetPolicy {
            enabled: true,
            allowed: vec!["127.0.0.0/8".parse().expect("an allowlist entry")],
        },
        tenant_allowed: Vec::new(),
        shutdown: shutdown.clone(),
    })?;

    println!(
        "3. Publishing {} events; the receiver prints what arrives:",
        args.events
    );
    for i in 0..args.events {
        let (event_type, payload) = if i % 2 == 0 {
            (
                "payment.received",
                serde_json::json!({"payment_id": format!("pay_{i}"), "amount": 1000 + i}),
            )
        } else {
            (
                "account.created",
                serde_json::json!({"account_id": format!("acc_{i}")}),
            )
        };
        db.execute("SELECT outbox.publish($1, $2)", &[&event_type, &payload])
            .await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open: i64 = db.query_one(OPEN, &[]).await?.get(0);
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            println!("   ({open} deliveries still open after 30 s; the log below shows why)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let mut pipeline = pipeline;
    while pipeline.join_next().await.is_some() {}

    println!("4. The delivery log (SELECT * FROM outbox.delivery_log):");
    println!(
        "     {:<12} {:<17} {:<17} {:>5} {:>7} {:<18} {:>7} outcome",
        "time", "webhook", "event type", "event", "attempt", "status / error", "ms"
    );
    for row in db.query(LOG, &[]).await? {
        println!(
            "     {:<12} {:<17} {:<17} {:>5} {:>7} {:<18} {:>7} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, i64>(3),
            row.get::<_, i32>(4),
            row.get::<_, String>(5),
            row.get::<_, String>(6),
            row.get::<_, String>(7),
        );
    }
    let host = admin
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    println!(
        "5. Explore it: psql -h {host} -U {} -d {} -c 'SELECT * FROM outbox.delivery_log'",
        admin.get_user().unwrap_or("postgres"),
        args.database
    );
    Ok(())
}
