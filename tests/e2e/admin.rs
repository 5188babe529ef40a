//! End-to-end tests of the admin CLI: the real `outboxd` binary run as a
//! child process against a fresh database per test, real receivers on
//! 127.0.0.1, and `outboxd run` where the daemon's side is the point
//! (targeted test events, replays, signing during a secret rotation).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outboxd_core::signing::{self, Secret};
use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::{
    free_port, wait_for_count, wait_until, Daemon, Received, Receiver, Reply, TestDb,
};

use crate::support::{cli, cli_env, BIN};

fn verifies(r: &Received, secret: &str) -> bool {
    let secret = Secret::parse(secret).unwrap();
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    signing::verify(
        &secret,
        r.header("webhook-id"),
        ts,
        &r.body,
        r.header("webhook-signature"),
    )
}

/// The `whsec_...` secret the CLI printed.
fn printed_secret(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret in {stdout:?}"))
        .to_owned()
}

#[tokio::test]
async fn test_event_sends_a_signed_request_now_and_logs_it_as_a_test() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::ok().body("thanks\nsecond line")).await;
    let (id, secret) =
        add_webhook(&client, "billing", &receiver.url("/hook"), &["payment.*"]).await;
    client
        .execute(
            "INSERT INTO outbox.event_types (name, example_payload) VALUES ('payment.received', '{\"amount\": 4200}')",
            &[],
        )
        .await
        .unwrap();

    let run = cli(
        &db,
        &[
            "test-event",
            "--webhook",
            "billing",
            "--event-type",
            "payment.received",
        ],
    )
    .await;
    assert!(run.ok(), "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("HTTP 200 OK in "), "{}", run.stdout);
    assert!(run.stdout.contains(" ms"), "{}", run.stdout);
    assert!(run.stdout.contains("thanks") && run.stdout.contains("second line"));
    assert!(run.stdout.contains("Delivered."), "{}", run.stdout);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert!(verifies(&requests[0], &secret));
    assert_eq!(requests[0].json()["data"]["amount"], 4200);
    assert_eq!(requests[0].json()["type"], "payment.received");

    let row = client
        .query_one(
            "SELECT l.is_test, l.outcome, l.status_code, l.delivery_state, l.response_body,
                    e.target_webhook_id, e.dispatched_at IS NOT NULL, d.attempts
               FROM outbox.delivery_log l
               JOIN outbox.events e ON e.id = l.event_id
               JOIN outbox.deliveries d ON d.id = l.delivery_id",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "marked as a test");
    assert_eq!(row.get::<_, String>(1), "delivered");
    assert_eq!(row.get::<_, Option<i32>>(2), Some(200));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("delivered")
    );
    assert_eq!(
        row.get::<_, Option<String>>(4).as_deref(),
        Some("thanks\nsecond line")
    );
    assert_eq!(row.get::<_, Option<i64>>(5), Some(id));
    assert!(row.get::<_, bool>(6), "inserted already dispatched");
    assert_eq!(row.get::<_, i32>(7), 1);
    assert_eq!(
        requests[0].header("webhook-id"),
        format!(
            "evt_{}",
            count(&client, "SELECT max(id) FROM outbox.events").await
        )
    );
}

#[tokio::test]
async fn test_event_to_a_failing_endpoint_prints_the_reason_and_exits_non_zero() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::status(500).body("database is down")).await;
    add_webhook(&client, "broken", &receiver.url("/hook"), &["*"]).await;
    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    let (closed_id, _) = add_webhook(&client, "closed", &closed, &["*"]).await;

    let run = cli(&db, &["test-event", "--webhook", "broken"]).await;
    run.assert_one_line_error("HTTP 500");
    assert!(
        run.stdout.contains("HTTP 500 Internal Server Error in "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("database is down"), "{}", run.stdout);

    let run = cli(&db, &["test-event", "--webhook", &closed_id.to_string()]).await;
    run.assert_one_line_error("connection refused");
    assert!(run.stdout.contains("No response after"), "{}", run.stdout);

    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.delivery_log WHERE is_test AND outcome = 'failed' AND delivery_state = 'failed'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_log WHERE error = 'connection refused' AND status_code IS NULL").await,
        1
    );
}

#[tokio::test]
async fn sql_test_event_reaches_only_its_webhook_and_cli_test_events_are_not_sent_again() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let target = Receiver::ok().await;
    let other = Receiver::ok().await;
    let (target_id, secret) = add_webhook(&client, "target", &target.url("/t"), &["*"]).await;
    add_webhook(&client, "other", &other.url("/o"), &["*"]).await;

    // Sent by the CLI before any daemon runs: the daemon must leave it alone.
    assert!(cli(&db, &["test-event", "--webhook", "target"]).await.ok());
    assert_eq!(target.count(), 1);

    let _daemon = Daemon::start(BIN, &db.url, &[]);
    let event_id: i64 = client
        .query_one("SELECT outbox.send_test_event($1)", &[&target_id])
        .await
        .unwrap()
        .get(0);
    assert!(
        wait_until(Duration::from_secs(20), || async { target.count() >= 2 }).await,
        "the daemon delivers the SQL test event"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = target.requests();
    assert_eq!(requests.len(), 2, "the CLI's event was not delivered again");
    assert_eq!(requests[1].header("webhook-id"), format!("evt_{event_id}"));
    assert!(verifies(&requests[1], &secret));
    assert_eq!(
        requests[1].json()["data"],
        serde_json::json!({"test": true})
    );
    assert_eq!(other.count(), 0, "a targeted event goes nowhere else");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.delivery_log WHERE is_test"
        )
        .await,
        2
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.deliveries").await,
        2,
        "one delivery per test event"
    );
}

#[tokio::test]
async fn replay_puts_failed_deliveries_back_by_delivery_and_by_webhook() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let status = Arc::new(AtomicU16::new(500));
    let answer = status.clone();
    let receiver = Receiver::start(move |_| Reply::status(answer.load(Ordering::SeqCst))).await;
    add_webhook(&client, "flaky", &receiver.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 3).await;

    let _daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_MAX_ATTEMPTS", "1")]);
    let failed = "SELECT count(*) FROM outbox.deliveries WHERE state = 'failed'";
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count(&client, failed).await == 3
        })
        .await,
        "all three fail after one attempt"
    );
    status.store(200, Ordering::SeqCst);

    let first: i64 = client
        .query_one("SELECT min(id) FROM outbox.deliveries", &[])
        .await
        .unwrap()
        .get(0);
    let run = cli(&db, &["replay", "--delivery", &first.to_string()]).await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("1 delivery replayed"),
        "{}",
        run.stdout
    );
    let delivered = "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'";
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count(&client, delivered).await == 1
        })
        .await,
        "the replayed delivery is delivered"
    );
    assert_eq!(count(&client, failed).await, 2);

    let run = cli(
        &db,
        &[
            "replay",
            "--webhook",
            "flaky",
            "--since",
            "1h",
            "--state",
            "failed",
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("2 failed deliveries"),
        "{}",
        run.stdout
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count(&client, delivered).await == 3
        })
        .await,
        "the rest are delivered"
    );
    // A fresh budget, and the log numbers on: the replayed attempt is the second.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.delivery_log WHERE outcome = 'delivered' AND attempt = 2"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE attempts = 1 AND replays = 1"
        )
        .await,
        3
    );
    let run = cli(&db, &["replay", "--delivery", &first.to_string()]).await;
    assert!(run.ok());
    assert!(
        run.stdout.starts_with("1 delivery replayed"),
        "a delivered one may be sent again"
    );
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_overlap_then_with_the_new_one() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (_, old) = add_webhook(&client, "rotating", &receiver.url("/hook"), &["*"]).await;

    let run = cli(
        &db,
        &["webhooks", "rotate-secret", "rotating", "--overlap", "1h"],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    let new = printed_secret(&run.stdout);
    assert_ne!(new, old);

    let _daemon = Daemon::start(BIN, &db.url, &[]);
    publish_many(&client, "order.created", 1).await;
    assert!(wait_until(Duration::from_secs(20), || async { receiver.count() == 1 }).await);
    let r = &receiver.requests()[0];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    assert!(r
        .header("webhook-signature")
        .split(' ')
        .all(|s| s.starts_with("v1,")));
    assert!(verifies(r, &new), "verifies with the new secret");
    assert!(verifies(r, &old), "verifies with the old secret");

    // The window ends; the UPDATE notifies and the daemon reloads.
    client
        .execute(
            "UPDATE outbox.webhook_secrets SET previous_secret_expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish_many(&client, "order.created", 1).await;
    assert!(wait_until(Duration::from_secs(20), || async { receiver.count() == 2 }).await);
    let r = &receiver.requests()[1];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);
    assert!(verifies(r, &new));
    assert!(!verifies(r, &old));
}

#[tokio::test]
async fn the_previous_secret_stops_signing_when_its_window_ends_without_any_update() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (id, old) = add_webhook(&client, "short", &receiver.url("/hook"), &["*"]).await;
    let new: String = client
        .query_one(
            "SELECT outbox.rotate_secret($1, interval '4 seconds')",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let rotated = std::time::Instant::now();
    let _daemon = Daemon::start(BIN, &db.url, &[]);
    publish_many(&client, "order.created", 1).await;
    assert!(wait_until(Duration::from_secs(4), || async { receiver.count() == 1 }).await);
    let during = receiver.requests()[0].clone();
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert!(verifies(&during, &old) && verifies(&during, &new));
    // Nothing notifies the daemon when the window ends: its cache must know.
    let end = Duration::from_millis(4500);
    tokio::time::sleep(end.saturating_sub(rotated.elapsed())).await;
    publish_many(&client, "order.created", 1).await;
    assert!(wait_until(Duration::from_secs(20), || async { receiver.count() == 2 }).await);
    let after = &receiver.requests()[1];
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(verifies(after, &new) && !verifies(after, &old));
}

#[tokio::test]
async fn webhooks_are_added_listed_as_a_table_and_as_json_and_disabled() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO outbox.event_types (name) VALUES ('payment.received')",
            &[],
        )
        .await
        .unwrap();
    let run = cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "Billing",
            "--url",
            "https://billing.example.com/hooks",
            "--events",
            "payment.*,paymnt.refunded",
            "--header",
            "X-Tenant=acme",
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(run.stdout.contains("Added webhook 1 "), "{}", run.stdout);
    let secret = printed_secret(&run.stdout);
    let stored: String = client
        .query_one(
            "SELECT secret FROM outbox.webhook_secrets WHERE webhook_id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(secret, stored);
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("paymnt.refunded"),
        "a pattern matching nothing in the catalog is flagged: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("\"payment.*\""), "{}", run.stderr);

    let run = cli(&db, &["webhooks", "list"]).await;
    assert!(run.ok());
    let mut lines = run.stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID",
        "NAME",
        "URL",
        "EVENTS",
        "STATE",
        "LAST DELIVERY",
        "SUCCESS 1H",
        "PENDING",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.contains("Billing")
            && row.contains("payment.*,paymnt.refunded")
            && row.contains("never")
    );
    assert!(!run.stdout.contains(&secret), "list never shows a secret");

    assert!(cli(
        &db,
        &["webhooks", "disable", "Billing", "--reason", "maintenance"]
    )
    .await
    .ok());
    let run = cli(&db, &["webhooks", "list", "--json"]).await;
    assert!(run.ok());
    assert!(!run.stdout.contains("whsec_"));
    let list: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON output");
    let hook = &list[0];
    assert_eq!(hook["id"], 1);
    assert_eq!(hook["name"], "Billing");
    assert_eq!(
        hook["event_types"],
        serde_json::json!(["payment.*", "paymnt.refunded"])
    );
    assert_eq!(hook["headers"]["x-tenant"], "(hidden)");
    assert_eq!(hook["enabled"], false);
    assert_eq!(hook["disabled_reason"], "maintenance");
    assert_eq!(hook["pending"], 0);
    assert!(hook["success_rate_last_hour"].is_null());

    assert!(cli(&db, &["webhooks", "enable", "1"]).await.ok());
    let run = cli(&db, &["webhooks", "remove", "Billing"]).await;
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        0
    );
}

#[tokio::test]
async fn event_types_are_added_listed_and_removed() {
    let db = TestDb::new().await;
    let run = cli(
        &db,
        &[
            "event-types",
            "add",
            "payment.received",
            "--description",
            "A payment was captured.",
            "--example",
            r#"{"amount": 4200, "currency": "EUR"}"#,
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    cli(&db, &["event-types", "add", "payment.received"])
        .await
        .assert_one_line_error("--replace");
    cli(&db, &["event-types", "add", "x", "--example", "{not json"])
        .await
        .assert_one_line_error("not valid JSON");
    cli(&db, &["event-types", "add", "Bad Name"])
        .await
        .assert_one_line_error("is invalid");

    let run = cli(&db, &["event-types", "list"]).await;
    assert!(
        run.stdout.contains("payment.received") && run.stdout.contains("A payment was captured.")
    );
    let run = cli(&db, &["event-types", "list", "--json"]).await;
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list[0]["example_payload"]["amount"], 4200);

    assert!(cli(&db, &["event-types", "remove", "payment.received"])
        .await
        .ok());
    cli(&db, &["event-types", "remove", "payment.received"])
        .await
        .assert_one_line_error("not in the catalog");
    let run = cli(&db, &["event-types", "list", "--json"]).await;
    assert_eq!(run.stdout.trim(), "[]");
}

#[tokio::test]
async fn deliveries_lists_the_log_and_shows_every_attempt() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::status(503).body("try later")).await;
    add_webhook(&client, "slow", &receiver.url("/hook"), &["*"]).await;
    let ok = Receiver::ok().await;
    add_webhook(&client, "fine", &ok.url("/hook"), &["*"]).await;
    assert!(!cli(&db, &["test-event", "--webhook", "slow"]).await.ok());
    assert!(cli(&db, &["test-event", "--webhook", "fine"]).await.ok());

    let run = cli(
        &db,
        &[
            "deliveries",
            "--webhook",
            "slow",
            "--state",
            "failed",
            "--since",
            "1h",
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].contains("TIME") && lines[0].contains("STATUS / ERROR"));
    assert!(
        lines[1].contains("slow")
            && lines[1].contains("503")
            && lines[1].contains("webhook.test (test)")
    );

    let run = cli(&db, &["deliveries", "--json", "--limit", "10"]).await;
    let log: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2);
    let delivery = log[1]["delivery_id"].as_i64().unwrap();

    let run = cli(&db, &["deliveries", "show", &delivery.to_string()]).await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.contains("failed after 1 attempt"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Attempt 1") && run.stdout.contains("try later"),
        "{}",
        run.stdout
    );
    cli(&db, &["deliveries", "show", "999"])
        .await
        .assert_one_line_error("no delivery with id 999");
}

#[tokio::test]
async fn bad_input_is_one_clear_line_and_a_non_zero_exit() {
    let db = TestDb::new().await;
    let client = db.client().await;
    add_webhook(&client, "real", "http://127.0.0.1:9/hook", &["*"]).await;

    cli(&db, &["test-event", "--webhook", "nope"])
        .await
        .assert_one_line_error("no webhook named \"nope\"");
    cli(&db, &["test-event", "--webhook", "4242"])
        .await
        .assert_one_line_error("no webhook with id 4242");
    cli(&db, &["replay", "--webhook", "real", "--since", "1x"])
        .await
        .assert_one_line_error("--since");
    cli(&db, &["deliveries", "--since", "yesterday"])
        .await
        .assert_one_line_error("RFC 3339");
    cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "example.com/hook",
        ],
    )
    .await
    .assert_one_line_error("must start with http:// or https://");
    cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "https://u:p@example.com/",
        ],
    )
    .await
    .assert_one_line_error("credentials");
    cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "n",
            "--url",
            "https://example.com/",
            "--events",
            "Payment.*",
        ],
    )
    .await
    .assert_one_line_error("not a valid pattern");
    cli(
        &db,
        &["webhooks", "rotate-secret", "real", "--overlap", "soon"],
    )
    .await
    .assert_one_line_error("--overlap");
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        1
    );

    let run = tokio::process::Command::new(BIN)
        .args(["webhooks", "list"])
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/x", free_port()),
        )
        .output()
        .await
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("connecting to the database"), "{err}");
}

#[tokio::test]
async fn the_delivery_log_view_exposes_no_secret() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = 'outbox' AND table_name = 'delivery_log' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns.last().map(String::as_str), Some("is_test"));
    assert!(columns.iter().all(|c| !c.contains("secret")), "{columns:?}");
}

#[tokio::test]
async fn demo_runs_to_completion_and_shows_every_delivery() {
    let server = outboxd_testkit::db::server_url();
    let database = format!("outboxd_demo_test_{}", std::process::id());
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(["demo", "--database", &database, "--events", "4"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &server)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the demo finishes within a minute")
    .expect("running outboxd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "1. Created database",
        "3. Publishing 4 events",
        "4. The delivery log",
        "5. Explore it: psql",
    ] {
        assert!(stdout.contains(step), "{step:?} missing from:\n{stdout}");
    }
    // Two payment events go to both webhooks, two account events to the CRM
    // only: six deliveries, and the flaky CRM's four each need a retry.
    let log: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("4. "))
        .collect();
    let delivered = log
        .iter()
        .filter(|l| l.trim_end().ends_with(" delivered"))
        .count();
    let retried = log
        .iter()
        .filter(|l| l.trim_end().ends_with(" retry"))
        .count();
    assert_eq!((delivered, retried), (6, 4), "{stdout}");

    let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn webhooks_add_takes_a_rate_limit_and_list_shows_it() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let run = cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "Slow partner",
            "--url",
            "https://partner.example.com/hook",
            "--rate-limit",
            "50",
        ],
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.contains("at most 50 requests/s"),
        "{}",
        run.stdout
    );
    let limit: Option<i32> = client
        .query_one("SELECT rate_limit FROM outbox.webhooks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, Some(50));

    let run = cli(&db, &["webhooks", "list"]).await;
    assert!(run.ok());
    assert!(
        run.stdout.lines().next().unwrap().contains("RATE LIMIT"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("50/s"), "{}", run.stdout);
    let run = cli(&db, &["webhooks", "list", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json[0]["rate_limit"], 50);

    let run = cli(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "Nothing at all",
            "--url",
            "https://partner.example.com/hook",
            "--rate-limit",
            "0",
        ],
    )
    .await;
    run.assert_one_line_error("--rate-limit: 0 is not a rate limit");
}

#[tokio::test]
async fn a_target_the_ssrf_guard_refuses_is_explained_on_add_and_in_a_test_event() {
    let db = TestDb::new().await;
    let receiver = Receiver::start(|_| Reply::ok()).await;
    let url = receiver.url("/hook");
    let strict = [("OUTBOXD_ALLOW_PRIVATE_TARGETS", "")];
    let add = cli_env(
        &db,
        &["webhooks", "add", "--name", "local", "--url", &url],
        &strict,
    )
    .await;
    assert!(add.ok(), "{}", add.stderr);
    assert!(add.stdout.contains("Added webhook"), "{}", add.stdout);
    let hint = "to allow it, add 127.0.0.1/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS";
    assert!(
        add.stderr.contains(&format!(
            "warning: deliveries to {url} would be blocked: 127.0.0.1 is loopback; {hint}"
        )),
        "{}",
        add.stderr
    );
    let allowed = cli(
        &db,
        &["webhooks", "add", "--name", "allowed", "--url", &url],
    )
    .await;
    assert!(allowed.ok(), "{}", allowed.stderr);
    assert!(!allowed.stderr.contains("warning"), "{}", allowed.stderr);

    let test = cli_env(&db, &["test-event", "--webhook", "local"], &strict).await;
    assert!(!test.ok(), "{}", test.stdout);
    assert!(test.stdout.contains(hint), "{}", test.stdout);
    assert!(test.stderr.contains(hint), "{}", test.stderr);
    let error: String = db
        .client()
        .await
        .query_one("SELECT error FROM outbox.delivery_log", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        error.starts_with("blocked: 127.0.0.1 is loopback; ") && error.contains(hint),
        "{error}"
    );
    assert_eq!(receiver.count(), 0, "nothing was sent");
}

#[tokio::test]
async fn a_replayed_delivery_numbers_its_attempts_on_and_logs_each_url_tried() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let down = Receiver::start(|_| Reply::status(500)).await;
    let up = Receiver::start(|_| Reply::ok()).await;
    let (hook, _) = add_webhook(&client, "moving", &down.url("/old"), &["*"]).await;
    publish_many(&client, "order.created", 1).await;
    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_MAX_ATTEMPTS", "1")]);
    let state_is =
        |state: &str| format!("SELECT count(*) FROM outbox.deliveries WHERE state = '{state}'");
    wait_for_count(
        &client,
        &state_is("failed"),
        1,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    // The receiver moved: the webhook is edited, then the delivery replayed.
    client
        .execute(
            "UPDATE outbox.webhooks SET url = $2 WHERE id = $1",
            &[&hook, &up.url("/new")],
        )
        .await
        .unwrap();
    let delivery: i64 = client
        .query_one("SELECT id FROM outbox.deliveries", &[])
        .await
        .unwrap()
        .get(0);
    let replay = cli(&db, &["replay", "--delivery", &delivery.to_string()]).await;
    assert!(replay.ok(), "{}", replay.stderr);
    wait_for_count(
        &client,
        &state_is("delivered"),
        1,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    let log: Vec<(i32, String, String)> = client
        .query(
            "SELECT attempt, webhook_url, duration_ms::text FROM outbox.delivery_log ORDER BY attempt_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let numbered: Vec<(i32, &str)> = log.iter().map(|(n, url, _)| (*n, url.as_str())).collect();
    assert_eq!(
        numbered,
        [(1, down.url("/old").as_str()), (2, up.url("/new").as_str())],
        "numbered on across the replay, each with the URL it went to"
    );
    for (_, _, ms) in &log {
        let decimals = ms.split('.').nth(1).map_or(0, str::len);
        assert!(
            decimals <= 3,
            "duration_ms {ms} is rounded to the microsecond"
        );
    }

    let show = cli(&db, &["deliveries", "show", &delivery.to_string()]).await;
    assert!(show.ok(), "{}", show.stderr);
    assert!(
        show.stdout
            .contains("delivered after 2 attempt(s) (replayed once)"),
        "{}",
        show.stdout
    );
    assert_eq!(
        show.stdout.matches("\nAttempt 1 ").count(),
        1,
        "{}",
        show.stdout
    );
    assert_eq!(
        show.stdout.matches("\nAttempt 2 ").count(),
        1,
        "{}",
        show.stdout
    );
}

#[tokio::test]
async fn replaying_what_does_not_exist_is_an_error_in_sql_too() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for (sql, says) in [
        ("SELECT outbox.replay(123)", "delivery 123 does not exist"),
        (
            "SELECT outbox.replay_failed(99, now() - interval '1 hour')",
            "webhook 99 does not exist",
        ),
        (
            "SELECT outbox.send_test_event(99)",
            "webhook 99 does not exist",
        ),
        (
            "SELECT outbox.rotate_secret(99)",
            "webhook 99 does not exist",
        ),
    ] {
        let e = client.query_one(sql, &[]).await.unwrap_err();
        let db_error = e.as_db_error().expect("a server error");
        assert_eq!(db_error.message(), says, "{sql}");
        assert_eq!(db_error.code().code(), "P0002", "{sql}: no_data_found");
    }
    let (hook, _) = add_webhook(&client, "real", "http://127.0.0.1:9/hook", &["*"]).await;
    let none: i32 = client
        .query_one(
            "SELECT outbox.replay_failed($1, now() - interval '1 hour')",
            &[&hook],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "a webhook with nothing failed replays nothing");
}

/// JSON nested `depth` arrays deep, as SQL: PostgreSQL takes any depth,
/// serde_json parses 128 levels.
fn deep_json_sql(depth: usize) -> String {
    format!("(repeat('[', {depth}) || repeat(']', {depth}))::jsonb")
}

#[tokio::test]
async fn deeply_nested_payloads_and_examples_are_shown_not_a_crash() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (hook, _) = add_webhook(&client, "deep", &receiver.url("/hook"), &["*"]).await;
    let deep = deep_json_sql(200);
    let delivery: i64 = client
        .query_one(
            &format!(
                "WITH t AS (INSERT INTO outbox.event_types (name, example_payload)
                            VALUES ('deep.event', {deep})),
                 e AS (INSERT INTO outbox.events (event_type, payload)
                       VALUES ('deep.event', {deep}) RETURNING id)
                 INSERT INTO outbox.deliveries (event_id, webhook_id) SELECT id, $1 FROM e
                 RETURNING id"
            ),
            &[&hook],
        )
        .await
        .unwrap()
        .get(0);
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let id = delivery.to_string();
    for args in [
        vec!["deliveries", "show", id.as_str()],
        vec!["deliveries", "show", id.as_str(), "--json"],
        vec!["event-types", "list"],
        vec!["event-types", "list", "--json"],
    ] {
        let run = cli(&db, &args).await;
        assert!(run.ok(), "{args:?}: {}\n{}", run.stdout, run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
        if args.contains(&"--json") {
            assert!(run.stdout.contains(&nested), "{args:?}: {}", run.stdout);
        } else {
            assert!(run.stdout.contains("[[[["), "{args:?}: {}", run.stdout);
        }
    }
    // A test event sends the deep example as it is.
    let run = cli(
        &db,
        &[
            "test-event",
            "--webhook",
            "deep",
            "--event-type",
            "deep.event",
        ],
    )
    .await;
    assert!(run.ok(), "{}\n{}", run.stdout, run.stderr);
    let sent = receiver.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        String::from_utf8_lossy(&sent[0].body).contains(&format!("\"data\":{nested}")),
        "the payload went out verbatim"
    );
}
