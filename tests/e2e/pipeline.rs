//! End-to-end tests of the core pipeline: a real PostgreSQL database per
//! test, real HTTP receivers on 127.0.0.1, and `outboxd run` as a child
//! process.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outboxd_core::signing::{self, Secret};
use outboxd_testkit::db::{add_webhook, count, publish_many, wait_for_other_sessions_to_end};
use outboxd_testkit::{wait_for_count, wait_until, Daemon, Receiver, Reply, TestDb};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::support::{attempts_of_delivery, delivered_counter, ready, Attempt, BIN};

#[tokio::test]
async fn fans_out_each_event_to_exactly_the_matching_webhooks_signed() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (exact, exact_secret) = add_webhook(
        &client,
        "exact",
        &receiver.url("/exact"),
        &["payment.received"],
    )
    .await;
    let (prefix, prefix_secret) =
        add_webhook(&client, "prefix", &receiver.url("/prefix"), &["payment.*"]).await;
    let (all, all_secret) = add_webhook(&client, "all", &receiver.url("/all"), &["*"]).await;
    add_webhook(&client, "none", &receiver.url("/none"), &["invoice.paid"]).await;

    publish_many(&client, "payment.received", 3).await;
    publish_many(&client, "payment.refund.created", 2).await;
    publish_many(&client, "account.created", 1).await;

    let _daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            receiver.count() >= 3 + 5 + 6
        })
        .await,
        "expected 14 deliveries, got {}",
        receiver.count()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = receiver.requests();
    let secrets = [
        ("/exact", exact, exact_secret, 3),
        ("/prefix", prefix, prefix_secret, 5),
        ("/all", all, all_secret, 6),
        ("/none", 0, String::new(), 0),
    ];
    for (path, _id, secret, expected) in secrets {
        let got: Vec<_> = requests.iter().filter(|r| r.path == path).collect();
        assert_eq!(got.len(), expected, "deliveries to {path}");
        for r in got {
            let secret = Secret::parse(&secret).unwrap();
            let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
            assert!(
                signing::verify(
                    &secret,
                    r.header("webhook-id"),
                    ts,
                    &r.body,
                    r.header("webhook-signature")
                ),
                "signature of {path} verifies with that webhook's secret"
            );
            assert_eq!(r.header("content-type"), "application/json");
            assert!(r.header("webhook-id").starts_with("evt_"));
            let body = r.json();
            assert!(body["type"].is_string() && body["timestamp"].is_string());
            assert!(body["data"]["n"].is_number());
        }
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_log WHERE outcome = 'delivered' AND status_code = 200").await,
        14
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.undispatched_events").await,
        0
    );
}

/// (id, state, attempts) of every delivery of one webhook, by id.
async fn deliveries_of(client: &Client, webhook_id: i64) -> Vec<(i64, String, i32)> {
    client
        .query(
            "SELECT id, state, attempts FROM outbox.deliveries WHERE webhook_id = $1 ORDER BY id",
            &[&webhook_id],
        )
        .await
        .expect("reading deliveries")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/hook")
}

#[tokio::test]
async fn redelivers_after_receiver_fails_twice() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|r| {
        if r.seen_before < 2 {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    })
    .await;
    let (hook, _) = add_webhook(&client, "flaky", &receiver.url("/flaky"), &["*"]).await;
    publish_many(&client, "order.created", 5).await;

    let daemon = Daemon::start(BIN, &db.url, &[]);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        5,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    let deliveries = deliveries_of(&client, hook).await;
    assert_eq!(deliveries.len(), 5);
    let expected: Vec<Attempt> = [(1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")]
        .iter()
        .map(|&(attempt, status, outcome)| Attempt {
            attempt,
            status_code: Some(status),
            error: None,
            outcome: outcome.into(),
        })
        .collect();
    for (id, state, attempts) in &deliveries {
        assert_eq!(
            (state.as_str(), *attempts),
            ("delivered", 3),
            "delivery {id}"
        );
        assert_eq!(
            attempts_of_delivery(&client, *id).await,
            expected,
            "delivery {id}"
        );
    }

    let requests = receiver.requests();
    assert_eq!(requests.len(), 15, "three requests per event");
    let mut by_id: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &requests {
        by_id
            .entry(r.header("webhook-id").to_owned())
            .or_default()
            .push(r.json()["data"]["n"].as_i64().unwrap());
    }
    assert_eq!(by_id.len(), 5, "one webhook-id per event: {by_id:?}");
    for (id, payloads) in &by_id {
        assert!(id.starts_with("evt_"), "{id}");
        assert_eq!(
            payloads.len(),
            3,
            "retries of {id} carry the same webhook-id"
        );
        assert!(
            payloads.iter().all(|n| *n == payloads[0]),
            "one webhook-id, one event: {id} {payloads:?}"
        );
    }
}

#[tokio::test]
async fn marks_unreachable_endpoint_failed_after_max_attempts() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (hook, _) = add_webhook(&client, "closed", &closed_port_url(), &["*"]).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_MAX_ATTEMPTS", "3")]);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'failed'",
        1,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    let deliveries = deliveries_of(&client, hook).await;
    assert_eq!(deliveries.len(), 1);
    let (id, _, attempts) = &deliveries[0];
    assert_eq!(*attempts, 3);
    let expected: Vec<Attempt> = [(1, "retry"), (2, "retry"), (3, "failed")]
        .iter()
        .map(|&(attempt, outcome)| Attempt {
            attempt,
            status_code: None,
            error: Some("connection refused".into()),
            outcome: outcome.into(),
        })
        .collect();
    assert_eq!(attempts_of_delivery(&client, *id).await, expected);
    let row = client
        .query_one(
            "SELECT last_status, last_error, locked_until IS NULL FROM outbox.deliveries WHERE id = $1",
            &[id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("connection refused")
    );
    assert!(row.get::<_, bool>(2), "a failed delivery holds no lease");
}

#[tokio::test]
async fn sigkill_with_requests_in_flight_loses_nothing_and_duplicates_are_bounded() {
    const EVENTS: usize = 300;
    const CONCURRENCY: usize = 32;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::ok().after(Duration::from_millis(200))).await;
    add_webhook(&client, "slow", &receiver.url("/slow"), &["*"]).await;
    publish_many(&client, "order.created", EVENTS as i64).await;

    let concurrency = CONCURRENCY.to_string();
    let env = [
        ("OUTBOXD_CONCURRENCY", concurrency.as_str()),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", concurrency.as_str()),
        ("OUTBOXD_LEASE", "3s"),
        ("OUTBOXD_REQUEST_TIMEOUT", "2s"),
    ];
    let mut first = Daemon::start(BIN, &db.url, &env);
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() >= 50 }).await,
        "the first daemon delivered nothing\n{}",
        first.log()
    );
    first.kill9().await;
    // Results the server had already received still commit.
    wait_for_other_sessions_to_end(&client).await;
    let at_kill = receiver.count();
    assert!(
        at_kill < EVENTS,
        "the kill came too late to cut anything off ({at_kill} received)"
    );
    // What the kill cut off: leased deliveries whose result was not written.
    // Only these may reach the receiver twice.
    let cut_off: HashSet<String> = client
        .query(
            "SELECT 'evt_' || event_id FROM outbox.deliveries WHERE state = 'in_flight'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let second = Daemon::start(BIN, &db.url, &env);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        EVENTS as i64,
        Duration::from_secs(40),
        &[&second],
    )
    .await;

    let requests = receiver.requests();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        *seen.entry(r.header("webhook-id")).or_default() += 1;
    }
    assert_eq!(seen.len(), EVENTS, "every event arrived at least once");
    let duplicated: Vec<(&str, usize)> = seen
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&id, &n)| (id, n))
        .collect();
    let duplicates = requests.len() - EVENTS;
    for (id, n) in &duplicated {
        assert!(
            cut_off.contains(*id),
            "{id} was sent {n} times though its result was written before the kill"
        );
        assert_eq!(*n, 2, "{id}: one cut-off attempt, one redelivery");
    }
    assert!(
        duplicates <= cut_off.len(),
        "{duplicates} duplicates, {} deliveries cut off",
        cut_off.len()
    );
    // The ones cut off were claimed twice, the attempt lost in the crash counted.
    let twice = count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE attempts = 2",
    )
    .await;
    let cut: Vec<String> = cut_off.iter().cloned().collect();
    let attempts_of_cut_off: Vec<(i32, i64, String)> = client
        .query(
            "SELECT d.attempts, count(*), string_agg(DISTINCT coalesce(d.last_error, ''), '; ')
               FROM outbox.deliveries d
              WHERE 'evt_' || d.event_id = ANY($1)
              GROUP BY 1 ORDER BY 1",
            &[&cut],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        twice >= cut_off.len() as i64,
        "{twice} deliveries took two attempts, {} were cut off; the cut-off ones by attempts \
         (count, errors): {attempts_of_cut_off:?}",
        cut_off.len()
    );
    eprintln!(
        "sigkill: {at_kill} received at the kill, {} cut off, {duplicates} duplicates \
         (concurrency {CONCURRENCY})",
        cut_off.len()
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.delivery_attempts WHERE outcome = 'delivered'"
        )
        .await,
        EVENTS as i64,
        "one delivered attempt per delivery"
    );
}

#[tokio::test]
async fn two_daemons_deliver_5000_events_exactly_once() {
    const EVENTS: i64 = 5000;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "fast", &receiver.url("/fast"), &["*"]).await;

    // A long lease: this test is about replicas never sharing a claim, not
    // about leases expiring on a machine too busy to answer in time.
    let env = [
        ("OUTBOXD_LEASE", "60s"),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", "64"),
    ];
    let a = Daemon::start(BIN, &db.url, &env);
    let b = Daemon::start(BIN, &db.url, &env);
    ready(&[&a, &b]).await;
    publish_many(&client, "order.created", EVENTS).await;

    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        EVENTS,
        Duration::from_secs(60),
        &[&a, &b],
    )
    .await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), EVENTS as usize, "requests received");
    let distinct: HashSet<&str> = requests.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(distinct.len(), EVENTS as usize, "distinct webhook-ids");
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.deliveries").await,
        EVENTS
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT delivery_id FROM outbox.delivery_attempts
              GROUP BY delivery_id HAVING count(*) = 1 AND bool_and(outcome = 'delivered')) x"
        )
        .await,
        EVENTS,
        "each delivery has exactly one attempt row"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        EVENTS
    );
    let (by_a, by_b) = (delivered_counter(&a).await, delivered_counter(&b).await);
    assert_eq!(
        by_a + by_b,
        EVENTS as u64,
        "the daemons' delivered counters add up ({by_a} + {by_b})"
    );
}

#[tokio::test]
async fn gone_410_disables_the_webhook_and_it_gets_nothing_more() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let gone = Receiver::start(|_| Reply::status(410).after(Duration::from_millis(300))).await;
    let healthy = Receiver::ok().await;
    let (gone_id, _) = add_webhook(&client, "gone", &gone.url("/gone"), &["*"]).await;
    let (healthy_id, _) = add_webhook(&client, "healthy", &healthy.url("/ok"), &["*"]).await;
    publish_many(&client, "order.created", 5).await;

    // One request at a time per webhook: the first answer (410) comes while
    // the other four deliveries to that webhook still wait.
    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_WEBHOOK_CONCURRENCY", "1")]);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.webhooks WHERE NOT enabled",
        1,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    let row = client
        .query_one(
            "SELECT enabled, disabled_reason, disabled_at IS NOT NULL FROM outbox.webhooks WHERE id = $1",
            &[&gone_id],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    let reason: Option<String> = row.get(1);
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("410")),
        "disabled_reason: {reason:?}"
    );
    assert!(row.get::<_, bool>(2), "disabled_at is set");

    wait_for_count(
        &client,
        &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {healthy_id} AND state = 'delivered'"),
        5,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    // Deliveries carry no order: whichever was sent first got the 410.
    let deliveries = deliveries_of(&client, gone_id).await;
    let mut states: Vec<&str> = deliveries.iter().map(|(_, s, _)| s.as_str()).collect();
    states.sort_unstable();
    assert_eq!(
        states,
        ["cancelled", "cancelled", "cancelled", "cancelled", "failed"],
        "one delivery got the 410, the waiting ones were cancelled\n{}",
        daemon.log()
    );
    let answered = deliveries.iter().find(|(_, s, _)| s == "failed").unwrap();
    assert_eq!(
        attempts_of_delivery(&client, answered.0).await,
        [Attempt {
            attempt: 1,
            status_code: Some(410),
            error: None,
            outcome: "failed".into()
        }]
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.delivery_attempts WHERE webhook_id = {gone_id}")
        )
        .await,
        1,
        "cancelled deliveries were never attempted"
    );
    assert_eq!(gone.count(), 1);

    // Published after the 410: the healthy webhook gets them, the gone one nothing.
    publish_many(&client, "order.created", 3).await;
    wait_for_count(
        &client,
        &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {healthy_id} AND state = 'delivered'"),
        8,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    assert_eq!(healthy.count(), 8);
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {gone_id}")
        )
        .await,
        5,
        "no delivery is created for a disabled webhook"
    );
    assert_eq!(gone.count(), 1);
}

/// Runs `sql`, expecting a check violation of `constraint`.
async fn assert_check_violation(client: &Client, sql: &str, constraint: &str) {
    let err = client
        .execute(sql, &[])
        .await
        .expect_err(&format!("`{sql}` should be refused"));
    let db_err = err
        .as_db_error()
        .unwrap_or_else(|| panic!("`{sql}`: not a database error: {err}"));
    assert_eq!(
        db_err.code(),
        &SqlState::CHECK_VIOLATION,
        "`{sql}`: {db_err}"
    );
    assert_eq!(db_err.constraint(), Some(constraint), "`{sql}`: {db_err}");
    assert!(
        db_err.message().contains(constraint),
        "the message names the constraint: {}",
        db_err.message()
    );
}

#[tokio::test]
async fn schema_refuses_bad_input_with_a_clear_error() {
    let db = TestDb::new().await;
    let client = db.client().await;
    assert_check_violation(
        &client,
        "INSERT INTO outbox.webhooks (name, url) VALUES ('ftp', 'ftp://example.com/x')",
        "url_scheme",
    )
    .await;
    assert_check_violation(
        &client,
        "INSERT INTO outbox.events (event_type, payload) VALUES ('Bad Type!', '{}')",
        "event_type_format",
    )
    .await;
    assert_check_violation(
        &client,
        "INSERT INTO outbox.webhooks (name, url, event_types)
         VALUES ('bad', 'https://example.com/x', '{Bad}')",
        "event_types_syntax",
    )
    .await;
    // publish goes through the same checks.
    let err = client
        .query_one("SELECT outbox.publish('Bad Type!', '{}')", &[])
        .await
        .expect_err("publish refuses a bad type");
    assert_eq!(
        err.as_db_error().and_then(|e| e.constraint()),
        Some("event_type_format")
    );
    // Nothing was written by the refused statements.
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhooks").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        0
    );
    // The good forms pass.
    add_webhook(
        &client,
        "good",
        "https://example.com/x",
        &["payment.*", "order.created"],
    )
    .await;
    // The event-type rule holds for updates too (sql/V10 checks it in
    // triggers, not in a CHECK constraint).
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload) VALUES ('order.created', '{}')",
            &[],
        )
        .await
        .unwrap();
    assert_check_violation(
        &client,
        "UPDATE outbox.events SET event_type = 'Bad Type!'",
        "event_type_format",
    )
    .await;
}

#[tokio::test]
async fn publish_with_the_same_idempotency_key_is_a_no_op_and_another_event_under_it_is_refused() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "hook", &receiver.url("/hook"), &["*"]).await;
    let publish = "SELECT outbox.publish('order.created', $1::jsonb, 'order-42')";
    let first: i64 = client
        .query_one(publish, &[&serde_json::json!({"order": 42})])
        .await
        .unwrap()
        .get(0);
    let again: i64 = client
        .query_one(publish, &[&serde_json::json!({"order": 42})])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, again, "a repeat returns the first event's id");
    // The same key for another event is a mistake of the application's: said.
    let err = client
        .query_one(publish, &[&serde_json::json!({"order": 43})])
        .await
        .expect_err("another payload under a used key is refused");
    let err = err.as_db_error().expect("a database error");
    assert_eq!(
        err.code(),
        &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
    );
    assert!(
        err.message().contains("'order-42'") && err.message().contains(&format!("event {first}")),
        "{}",
        err.message()
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        1
    );

    let daemon = Daemon::start(BIN, &db.url, &[]);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        1,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    // After delivery the key still dedupes.
    let late: i64 = client
        .query_one(publish, &[&serde_json::json!({"order": 42})])
        .await
        .unwrap()
        .get(0);
    assert_eq!(late, first);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        1
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.deliveries").await,
        1
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].json()["data"],
        serde_json::json!({"order": 42}),
        "the first publish's payload is the one delivered"
    );
    // Without a key, every publish is an event.
    for _ in 0..2 {
        client
            .query_one("SELECT outbox.publish('order.created', '{}')", &[])
            .await
            .unwrap();
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.events").await,
        3
    );
}

#[tokio::test]
async fn send_test_event_reaches_only_its_webhook() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (target, _) = add_webhook(&client, "target", &receiver.url("/target"), &["order.*"]).await;
    // Subscribed to everything: it would get a test event that leaked.
    let (other, _) = add_webhook(&client, "other", &receiver.url("/other"), &["*"]).await;
    let daemon = Daemon::start(BIN, &db.url, &[]);

    client
        .query_one("SELECT outbox.send_test_event($1)", &[&target])
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() >= 1 }).await,
        "the test event never arrived\n{}",
        daemon.log()
    );
    client
        .execute(
            "INSERT INTO outbox.event_types (name, description, example_payload)
             VALUES ('order.created', 'an order was placed', '{\"order\": 42, \"total\": \"9.99\"}')",
            &[],
        )
        .await
        .unwrap();
    client
        .query_one(
            "SELECT outbox.send_test_event($1, 'order.created')",
            &[&target],
        )
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() >= 2 }).await,
        "the second test event never arrived\n{}",
        daemon.log()
    );
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        2,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.path == "/target"));
    let bodies: Vec<serde_json::Value> = requests.iter().map(|r| r.json()).collect();
    let mut got: Vec<(String, serde_json::Value)> = bodies
        .iter()
        .map(|b| (b["type"].as_str().unwrap().to_owned(), b["data"].clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "order.created".to_owned(),
                serde_json::json!({"order": 42, "total": "9.99"})
            ),
            ("webhook.test".to_owned(), serde_json::json!({"test": true})),
        ]
    );
    assert_eq!(
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {other}")
        )
        .await,
        0,
        "the other webhook got no delivery"
    );

    // A disabled webhook cannot be sent a test event.
    client
        .execute(
            "UPDATE outbox.webhooks SET enabled = false WHERE id = $1",
            &[&other],
        )
        .await
        .unwrap();
    let err = client
        .query_one("SELECT outbox.send_test_event($1)", &[&other])
        .await
        .expect_err("a disabled webhook is refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{err}"
    );
}

#[tokio::test]
async fn replay_puts_a_failed_delivery_back_with_a_fresh_budget() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start({
        let healthy = healthy.clone();
        move |_| {
            if healthy.load(Ordering::SeqCst) {
                Reply::ok()
            } else {
                Reply::status(500)
            }
        }
    })
    .await;
    let (hook, _) = add_webhook(&client, "hook", &receiver.url("/hook"), &["*"]).await;
    publish_many(&client, "order.created", 2).await;

    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_MAX_ATTEMPTS", "2")]);
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'failed' AND attempts = 2",
        2,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    assert_eq!(receiver.count(), 4);
    let deliveries = deliveries_of(&client, hook).await;
    let (first, second) = (deliveries[0].0, deliveries[1].0);

    healthy.store(true, Ordering::SeqCst);
    let replayed: i32 = client
        .query_one("SELECT outbox.replay($1)", &[&first])
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, 1);
    // Only the one still failed: the first is pending, in flight or delivered.
    let replayed: i32 = client
        .query_one(
            "SELECT outbox.replay_failed($1, now() - interval '1 hour')",
            &[&hook],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, 1);

    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        2,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    let expected = vec![
        Attempt {
            attempt: 1,
            status_code: Some(500),
            error: None,
            outcome: "retry".into(),
        },
        Attempt {
            attempt: 2,
            status_code: Some(500),
            error: None,
            outcome: "failed".into(),
        },
        Attempt {
            attempt: 3,
            status_code: Some(200),
            error: None,
            outcome: "delivered".into(),
        },
    ];
    for id in [first, second] {
        let rows = client
            .query(
                "SELECT attempt, status_code, error, outcome FROM outbox.delivery_attempts
                  WHERE delivery_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .unwrap();
        let got: Vec<Attempt> = rows
            .iter()
            .map(|r| Attempt {
                attempt: r.get(0),
                status_code: r.get(1),
                error: r.get(2),
                outcome: r.get(3),
            })
            .collect();
        assert_eq!(got, expected, "delivery {id}, in the order written");
    }
    assert_eq!(
        deliveries_of(&client, hook).await,
        [
            (first, "delivered".to_owned(), 1),
            (second, "delivered".to_owned(), 1)
        ],
        "the replay's budget is counted afresh"
    );
    let counted: Vec<(i32, i32)> = client
        .query(
            "SELECT earlier_attempts, replays FROM outbox.deliveries WHERE webhook_id = $1 ORDER BY id",
            &[&hook],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        counted,
        [(2, 1), (2, 1)],
        "the log numbers on across the replay"
    );
    assert_eq!(receiver.count(), 6);
    // Nothing failed is left to replay.
    let replayed: i32 = client
        .query_one(
            "SELECT outbox.replay_failed($1, now() - interval '1 hour')",
            &[&hook],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, 0);
}

/// The types of the events a receiver got, sorted.
fn received_types(receiver: &Receiver) -> Vec<String> {
    let mut types: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    types.sort();
    types
}

/// Events are read by snapshot, not by id: an event whose transaction began
/// first and commits last is delivered once it commits; an open transaction
/// holds back nothing committed after it; a rolled-back one leaves nothing.
#[tokio::test]
async fn late_commits_are_delivered_and_open_transactions_hold_nothing_back() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "all", &receiver.url("/"), &["*"]).await;
    let daemon = Daemon::start(BIN, &db.url, &[]);

    let mut late = db.client().await;
    let late = late.transaction().await.unwrap();
    let mut aborted = db.client().await;
    let aborted = aborted.transaction().await.unwrap();
    for (tx, event_type) in [(&late, "order.late"), (&aborted, "order.aborted")] {
        tx.execute(
            "INSERT INTO outbox.events (event_type, payload) VALUES ($1, '{}')",
            &[&event_type],
        )
        .await
        .unwrap();
    }
    publish_many(&client, "order.early", 3).await;
    assert!(
        wait_until(Duration::from_secs(10), || async { receiver.count() >= 3 }).await,
        "events committed after an open transaction were held back: {:?}\n{}",
        received_types(&receiver),
        daemon.log()
    );
    // One more pass over the stream while both are open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    aborted.rollback().await.unwrap();
    late.commit().await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async { receiver.count() >= 4 }).await,
        "the late commit was not delivered: {:?}\n{}",
        received_types(&receiver),
        daemon.log()
    );
    publish_many(&client, "order.after", 1).await;
    assert!(wait_until(Duration::from_secs(10), || async { receiver.count() >= 5 }).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        received_types(&receiver),
        [
            "order.after",
            "order.early",
            "order.early",
            "order.early",
            "order.late"
        ]
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.undispatched_events").await,
        0
    );
}

/// A dump restored into another cluster brings a progress row and event
/// xids from that cluster's transaction counter, which may be far ahead of
/// this one's: the daemon notices, starts the stream over, delivers what was
/// waiting and sends nothing twice.
#[tokio::test]
async fn a_progress_row_from_another_cluster_starts_the_stream_over() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "all", &receiver.url("/"), &["*"]).await;
    publish_many(&client, "order.sent", 2).await;
    let mut daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(wait_until(Duration::from_secs(10), || async { receiver.count() >= 2 }).await);
    daemon.terminate();
    daemon.wait(Duration::from_secs(10)).await;

    // As the other cluster left them: the two events sent are below its
    // `done`, the waiting one was written by a transaction `done` saw running.
    publish_many(&client, "order.waiting", 1).await;
    client
        .batch_execute(
            "UPDATE outbox.dispatch_state
                SET done = '90000000000:90000000005:90000000002', upto = NULL,
                    after_xid = NULL, after_id = NULL;
             UPDATE outbox.events SET xid = '90000000001' WHERE event_type = 'order.sent';
             UPDATE outbox.events SET xid = '90000000002' WHERE event_type = 'order.waiting';",
        )
        .await
        .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.undispatched_events").await,
        1
    );
    // Written here after the restore, before the daemon is back: its xid
    // is this server's, which the other cluster's row would call old.
    publish_many(&client, "order.restored", 1).await;
    let daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || async { receiver.count() >= 4 }).await,
        "{:?}\n{}",
        received_types(&receiver),
        daemon.log()
    );
    publish_many(&client, "order.after", 1).await;
    assert!(wait_until(Duration::from_secs(10), || async { receiver.count() >= 5 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        received_types(&receiver),
        [
            "order.after",
            "order.restored",
            "order.sent",
            "order.sent",
            "order.waiting"
        ]
    );
    // The two sent ones would look new here: they are marked instead.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.events WHERE event_type = 'order.sent' AND dispatched_at IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.undispatched_events").await,
        0
    );
}
