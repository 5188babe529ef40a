//! Tenants end to end: which webhooks an event of a tenant, of another
//! tenant and of the platform reaches; idempotency keys per tenant; tenant
//! ids refused with a clear error; and a tenant's webhook kept off private
//! addresses even where the platform's may go.

use std::time::Duration;

use outboxd_testkit::db::count;
use outboxd_testkit::{wait_until, Daemon, Receiver, TestDb};
use tokio_postgres::Client;

use crate::support::BIN;

/// Tenants' webhooks may reach the test's receivers on loopback.
pub const TENANT_LOOPBACK: (&str, &str) = ("OUTBOXD_TENANT_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8");

async fn webhook(
    client: &Client,
    name: &str,
    url: &str,
    patterns: &[&str],
    tenant: Option<&str>,
) -> i64 {
    let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    client
        .query_one(
            "INSERT INTO outbox.webhooks (name, url, event_types, tenant) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&name, &url, &patterns, &tenant],
        )
        .await
        .expect("adding a webhook")
        .get(0)
}

async fn publish(
    client: &Client,
    event_type: &str,
    key: Option<&str>,
    tenant: Option<&str>,
) -> i64 {
    client
        .query_one(
            "SELECT outbox.publish($1, '{\"x\": 1}', idempotency_key => $2, tenant => $3)",
            &[&event_type, &key, &tenant],
        )
        .await
        .expect("publishing")
        .get(0)
}

#[tokio::test]
async fn each_event_reaches_its_tenants_webhooks_and_the_platforms_only() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    for (name, patterns, tenant) in [
        ("platform", "*", None),
        ("acme", "*", Some("acme")),
        ("acme-pay", "payment.*", Some("acme")),
        ("globex", "*", Some("globex")),
    ] {
        let url = receiver.url(&format!("/{name}"));
        webhook(&client, name, &url, &[patterns], tenant).await;
    }

    publish(&client, "payment.received", None, Some("acme")).await;
    publish(&client, "order.created", None, Some("acme")).await;
    publish(&client, "payment.received", None, Some("globex")).await;
    publish(&client, "payment.received", None, None).await;
    // An event of a tenant without webhooks reaches the platform alone.
    publish(&client, "order.created", None, Some("initech")).await;

    let _daemon = Daemon::start(BIN, &db.url, &[TENANT_LOOPBACK]);
    // 5 to the platform, 2 to acme, 1 to acme-pay, 1 to globex.
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() >= 9 }).await,
        "got {} deliveries",
        receiver.count()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = |path: &str| {
        let mut types: Vec<String> = receiver
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        types.sort();
        types
    };
    assert_eq!(got("/platform").len(), 5);
    assert_eq!(got("/acme"), ["order.created", "payment.received"]);
    assert_eq!(got("/acme-pay"), ["payment.received"]);
    assert_eq!(got("/globex"), ["payment.received"]);
    assert_eq!(receiver.count(), 9);
}

#[tokio::test]
async fn idempotency_keys_are_unique_per_tenant() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let acme = publish(&client, "order.created", Some("k1"), Some("acme")).await;
    assert_eq!(
        publish(&client, "order.created", Some("k1"), Some("acme")).await,
        acme
    );
    let globex = publish(&client, "order.created", Some("k1"), Some("globex")).await;
    let platform = publish(&client, "order.created", Some("k1"), None).await;
    assert_eq!(
        publish(&client, "order.created", Some("k1"), None).await,
        platform
    );
    assert!(acme != globex && globex != platform && acme != platform);
    // Positional arguments and the old three-argument call still work.
    let positional: i64 = client
        .query_one(
            "SELECT outbox.publish('order.created', '{}', 'k2', 'acme')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let three: i64 = client
        .query_one("SELECT outbox.publish('order.created', '{}', 'k2')", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(positional, three);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        5
    );
    // Direct inserts follow the same rule.
    let dup = client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, idempotency_key, tenant) VALUES ('a.b', '{}', 'k1', 'acme')",
            &[],
        )
        .await;
    assert!(dup.is_err());
}

#[tokio::test]
async fn malformed_tenant_ids_are_refused_with_a_clear_error() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for bad in ["Acme", "", "-acme", "a b", "acme/x", &"a".repeat(65)] {
        let e = client
            .query_one(
                "SELECT outbox.publish('order.created', '{}', tenant => $1)",
                &[&bad],
            )
            .await
            .expect_err(bad);
        let db_error = e.as_db_error().expect("a database error");
        assert_eq!(db_error.constraint(), Some("tenant_format"), "{bad:?}");
        assert!(
            db_error
                .detail()
                .unwrap_or_default()
                .contains("lowercase letters, digits"),
            "{:?}",
            db_error.detail()
        );
    }
    let e = client
        .execute(
            "INSERT INTO outbox.webhooks (name, url, tenant) VALUES ('x', 'https://x.example/', 'ACME')",
            &[],
        )
        .await
        .expect_err("a bad tenant on a webhook");
    assert_eq!(e.as_db_error().unwrap().constraint(), Some("tenant_format"));
    let e = client
        .execute("UPDATE outbox.events SET tenant = 'No Way'", &[])
        .await;
    assert!(e.is_ok(), "no rows yet");
    publish(&client, "order.created", None, Some("acme")).await;
    let e = client
        .execute("UPDATE outbox.events SET tenant = 'No Way'", &[])
        .await
        .expect_err("a bad tenant set later");
    assert_eq!(e.as_db_error().unwrap().constraint(), Some("tenant_format"));
}

#[tokio::test]
async fn a_tenants_webhook_is_kept_off_private_addresses_the_platform_may_reach() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    // The test daemon allows loopback for the platform's webhooks.
    let platform = webhook(
        &client,
        "platform",
        &receiver.url("/platform"),
        &["*"],
        None,
    )
    .await;
    let tenant = webhook(
        &client,
        "acme",
        &receiver.url("/acme"),
        &["*"],
        Some("acme"),
    )
    .await;
    publish(&client, "order.created", None, Some("acme")).await;
    let _daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(
                &db.client().await,
                &format!(
                    "SELECT count(*) FROM outbox.delivery_attempts WHERE webhook_id = {tenant}"
                ),
            )
            .await
                >= 1
        })
        .await
    );
    assert!(wait_until(Duration::from_secs(10), || async { receiver.count() >= 1 }).await);
    let paths: Vec<String> = receiver.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        ["/platform"],
        "only the platform's webhook was reached"
    );
    let error: String = client
        .query_one(
            "SELECT error FROM outbox.delivery_attempts WHERE webhook_id = $1 LIMIT 1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        error.contains("blocked") && error.contains("127.0.0.1"),
        "{error}"
    );
    let _ = platform;
}
