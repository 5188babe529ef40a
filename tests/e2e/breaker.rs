//! The circuit breaker end to end: a webhook failing again and again is
//! paused without spending the attempts of its waiting deliveries (its new
//! events wait as deferred rows, and make its probe when nothing else
//! waits), resumes when its endpoint recovers, and is disabled with a
//! reason when it keeps failing past OUTBOXD_DISABLE_FAILING_AFTER. Real
//! daemon, real receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::{wait_until, Daemon, Receiver, Reply, TestDb};

use crate::support::BIN;

/// A receiver that answers 500 while `failing` is set, else 200.
async fn switchable(failing: Arc<AtomicBool>) -> Receiver {
    Receiver::start(move |_| {
        if failing.load(Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await
}

/// A database with one webhook whose receiver fails while the flag is set
/// (it starts set), and `events` events published to it.
async fn failing_webhook(
    events: i64,
) -> (
    TestDb,
    tokio_postgres::Client,
    Arc<AtomicBool>,
    Receiver,
    i64,
) {
    let db = TestDb::new().await;
    let client = db.client().await;
    let failing = Arc::new(AtomicBool::new(true));
    let receiver = switchable(failing.clone()).await;
    let (hook, _) = add_webhook(&client, "down", &receiver.url("/down"), &["*"]).await;
    publish_many(&client, "order.created", events).await;
    (db, client, failing, receiver, hook)
}

/// A daemon that pauses the webhook after 3 failures for `cooldown`, one
/// request at a time and `max_attempts` attempts a delivery; returns once
/// the pause is recorded.
async fn paused_daemon(
    db: &TestDb,
    client: &tokio_postgres::Client,
    cooldown: &str,
    max_attempts: &str,
) -> Daemon {
    let daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_BREAKER_THRESHOLD", "3"),
            ("OUTBOXD_BREAKER_COOLDOWN", cooldown),
            ("OUTBOXD_WEBHOOK_CONCURRENCY", "1"),
            ("OUTBOXD_MAX_ATTEMPTS", max_attempts),
        ],
    );
    let paused = wait_until(Duration::from_secs(20), || async {
        count(
            client,
            "SELECT count(*) FROM outbox.webhook_health WHERE paused_until > now()",
        )
        .await
            == 1
    })
    .await;
    assert!(paused, "no pause recorded:\n{}", daemon.log());
    daemon
}

/// Waits until `n` deliveries are delivered.
async fn delivered(client: &tokio_postgres::Client, n: i64) -> bool {
    wait_until(Duration::from_secs(20), || async {
        count(
            client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        )
        .await
            == n
    })
    .await
}

/// Waits until `n` events wait deferred.
async fn deferred(client: &tokio_postgres::Client, n: i64) -> bool {
    wait_until(Duration::from_secs(10), || async {
        count(
            client,
            "SELECT coalesce(sum(cardinality(event_ids)), 0)::int8 FROM outbox.deferred_deliveries",
        )
        .await
            == n
    })
    .await
}

#[tokio::test]
async fn pauses_a_failing_webhook_without_spending_its_waiting_deliveries_attempts() {
    let (db, client, failing, receiver, hook) = failing_webhook(20).await;

    let daemon = paused_daemon(&db, &client, "3s", "50").await;
    // While paused, nothing more is sent and nothing more is spent.
    let sent = receiver.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), sent, "requests sent while paused");
    assert!(
        sent <= 4,
        "{sent} requests before the pause (threshold 3, one in flight)"
    );
    // Those claimed before the pause went back with their attempt; those
    // fanned out during it wait too (no replica claims a paused webhook's).
    let untouched = count(
        &client,
        "SELECT count(*) FROM outbox.deliveries
          WHERE attempts = 0 AND state = 'pending'",
    )
    .await;
    assert!(
        untouched >= 16,
        "{untouched} waiting deliveries held back with all their attempts"
    );
    // Events published during the pause wait as deferred rows, not
    // deliveries (V29).
    publish_many(&client, "order.paid", 30).await;
    assert!(
        deferred(&client, 30).await,
        "events of the pause not deferred:\n{}",
        daemon.log()
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.deliveries").await,
        20
    );
    // The admin sees it.
    let list = tokio::process::Command::new(BIN)
        .args(["webhooks", "list"])
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("paused until"), "{list}");
    let log = daemon.log();
    assert!(log.contains("webhook paused"), "{log}");
    assert!(log.contains(&format!("webhook_id={hook}")), "{log}");

    // The endpoint recovers: the probe after the cooldown succeeds, the rest follows.
    failing.store(false, Ordering::SeqCst);
    let all = delivered(&client, 50).await;
    assert!(all, "not all delivered after recovery:\n{}", daemon.log());
    assert_eq!(
        count(
            &client,
            "SELECT count(DISTINCT event_id) FROM outbox.deliveries"
        )
        .await,
        50,
        "each event one delivery"
    );
    let attempts = count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await;
    assert!(
        attempts <= 50 + 4,
        "{attempts} attempts: the pause must not have spent any"
    );
    let cleared = wait_until(Duration::from_secs(5), || async {
        count(
            &client,
            "SELECT count(*) FROM outbox.webhook_health WHERE failing_since IS NULL AND paused_until IS NULL",
        )
        .await
            == 1
    })
    .await;
    assert!(cleared, "the failure record stays after recovery");
    assert!(daemon.log().contains("pause lifted"), "{}", daemon.log());
}

#[tokio::test]
async fn disables_a_webhook_that_keeps_failing_past_the_limit() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = switchable(Arc::new(AtomicBool::new(true))).await;
    let (hook, _) = add_webhook(&client, "dead", &receiver.url("/dead"), &["*"]).await;
    let fine = Receiver::ok().await;
    let (healthy, _) = add_webhook(&client, "fine", &fine.url("/"), &["*"]).await;
    publish_many(&client, "order.created", 10).await;

    let daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_BREAKER_THRESHOLD", "2"),
            ("OUTBOXD_BREAKER_COOLDOWN", "1s"),
            ("OUTBOXD_DISABLE_FAILING_AFTER", "1500ms"),
            ("OUTBOXD_MAX_ATTEMPTS", "50"),
        ],
    );
    let disabled = wait_until(Duration::from_secs(30), || async {
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.webhooks WHERE id = {hook} AND NOT enabled"),
        )
        .await
            == 1
    })
    .await;
    assert!(disabled, "not disabled:\n{}", daemon.log());
    let reason: String = client
        .query_one(
            "SELECT disabled_reason FROM outbox.webhooks WHERE id = $1",
            &[&hook],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        reason.starts_with("failing since ") && reason.contains("HTTP 500"),
        "{reason}"
    );
    // Its waiting deliveries are cancelled; the healthy webhook got everything.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            count(
                &client,
                &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {healthy} AND state = 'delivered'"),
            )
            .await
                == 10
        })
        .await
    );
    // Those that were in flight when it was disabled are cancelled when due.
    let none_open = wait_until(Duration::from_secs(10), || async {
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {hook} AND state IN ('pending', 'in_flight')"),
        )
        .await
            == 0
    })
    .await;
    assert!(none_open, "a disabled webhook keeps no waiting deliveries");
    assert!(
        daemon.log().contains("webhook disabled"),
        "{}",
        daemon.log()
    );
}

#[tokio::test]
async fn a_webhook_whose_pause_ends_with_nothing_due_is_probed_with_its_deferred_events() {
    let (db, client, failing, receiver, _) = failing_webhook(3).await;

    // One attempt each: the failures that open the breaker leave nothing
    // waiting to probe it with when the pause ends.
    let daemon = paused_daemon(&db, &client, "2s", "1").await;
    publish_many(&client, "order.paid", 10).await;
    assert!(
        deferred(&client, 10).await,
        "events of the pause not deferred:\n{}",
        daemon.log()
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'pending'"
        )
        .await,
        0,
        "nothing waits to probe with"
    );

    // The endpoint is back: the sweep makes the deferred events the probe
    // once the pause is over, and the recovery sends the rest.
    failing.store(false, Ordering::SeqCst);
    let all = delivered(&client, 10).await;
    assert!(
        all,
        "the deferred events were not delivered:\n{}",
        daemon.log()
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.deferred_deliveries").await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'failed'"
        )
        .await,
        3
    );
    assert_eq!(
        receiver.count(),
        3 + 10,
        "each event sent once after the failures"
    );
}
