//! End-to-end tests of the SSRF guard: webhooks pointing at loopback,
//! private and cloud-metadata addresses, as literals, IPv4-mapped IPv6 and a
//! host name, are refused inside the connector before any connection, each
//! attempt logged `blocked: <address> is <kind>` with the setting that
//! allows it, and its delivery kept for a retry; a daemon started with the
//! allowlist widened delivers them at once, without a replay. The listeners
//! are loopback ones that count connections, so "nothing was sent" is
//! observed, not assumed; 10.0.0.5 and 169.254.169.254 are never actually
//! contacted.

use std::time::Duration;

use outboxd_core::DeliveryState;
use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::raw::{self, RawServer};
use outboxd_testkit::{wait_for_count, Daemon, TestDb};
use tokio_postgres::Client;

use crate::support::{attempts_of_webhook, wait_for_deliveries_in, Attempt, BIN};

/// The daemon's allowlist as the tests' default sets it: loopback only.
const LOOPBACK: &str = "127.0.0.0/8,::1/128";

/// A daemon that refuses every private target and, after one attempt,
/// would not retry for an hour: what happens next is up to the test.
const STRICT: &[(&str, &str)] = &[
    ("OUTBOXD_ALLOW_PRIVATE_TARGETS", ""),
    ("OUTBOXD_RETRY_BASE_DELAY", "1h"),
    ("OUTBOXD_RETRY_MAX_DELAY", "2h"),
];

/// A loopback listener that answers 200 and counts connections.
async fn counting_listener(addr: &str) -> RawServer {
    RawServer::start(addr, |mut s, _| async move {
        raw::answer(&mut s, raw::OK).await
    })
    .await
}

/// `[::1]` listener if this machine does IPv6 loopback, else says why not.
async fn ipv6_listener() -> Option<RawServer> {
    match raw::ipv6_loopback_works() {
        Ok(()) => Some(counting_listener("[::1]:0").await),
        Err(e) => {
            eprintln!("skipping the [::1] case: IPv6 loopback does not work here ({e})");
            None
        }
    }
}

/// A webhook under test: its URL and the errors its attempt may be logged with.
struct Target {
    name: &'static str,
    url: String,
    errors: Vec<&'static str>,
}

fn loopback_targets(v4: &RawServer, v6: Option<&RawServer>) -> Vec<Target> {
    let port = v4.addr.port();
    let mut targets = vec![
        Target {
            name: "loopback",
            url: format!("http://127.0.0.1:{port}/hook"),
            errors: vec!["blocked: 127.0.0.1 is loopback"],
        },
        Target {
            name: "mapped",
            url: format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            errors: vec!["blocked: ::ffff:127.0.0.1 is loopback"],
        },
        Target {
            // A name, judged after resolution: whichever loopback address comes first.
            name: "localhost",
            url: format!("http://localhost:{port}/hook"),
            errors: vec!["blocked: 127.0.0.1 is loopback", "blocked: ::1 is loopback"],
        },
    ];
    if let Some(v6) = v6 {
        targets.push(Target {
            name: "v6-loopback",
            url: format!("http://[::1]:{}/hook", v6.addr.port()),
            errors: vec!["blocked: ::1 is loopback"],
        });
    }
    targets
}

/// Adds one webhook per target, subscribed to everything; returns their ids.
async fn add_targets(client: &Client, targets: &[Target]) -> Vec<i64> {
    let mut ids = Vec::new();
    for t in targets {
        ids.push(add_webhook(client, t.name, &t.url, &["*"]).await.0);
    }
    ids
}

/// Each target got exactly one attempt, refused with its reason and the
/// setting that allows it, and kept for a retry; the daemon logged the same.
async fn assert_blocked_once(client: &Client, targets: &[Target], ids: &[i64], log: &str) {
    for (t, &id) in targets.iter().zip(ids) {
        let rows = attempts_of_webhook(client, id).await;
        assert_eq!(rows.len(), 1, "{}: one attempt so far: {rows:?}", t.name);
        let row = &rows[0];
        let error = row.error.as_deref().unwrap_or("");
        assert!(
            t.errors.iter().any(|e| error.starts_with(&format!("{e};"))),
            "{}: logged {error:?}, want one of {:?}",
            t.name,
            t.errors
        );
        assert!(
            error.contains("to allow it, add ")
                && error.contains(" to OUTBOXD_ALLOW_PRIVATE_TARGETS"),
            "{}: {error:?} does not say how to allow the target",
            t.name
        );
        assert_eq!(
            (row.attempt, row.status_code, row.outcome.as_str()),
            (1, None, "retry"),
            "{}",
            t.name
        );
        let delivery = client
            .query_one(
                "SELECT state, attempts, last_error, last_status FROM outbox.deliveries
                  WHERE webhook_id = $1",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(delivery.get::<_, String>(0), "pending", "{}", t.name);
        assert_eq!(delivery.get::<_, i32>(1), 1, "{}", t.name);
        assert_eq!(
            delivery.get::<_, Option<String>>(2).as_deref(),
            Some(error),
            "{}",
            t.name
        );
        assert_eq!(delivery.get::<_, Option<i32>>(3), None, "{}", t.name);
        assert!(
            outboxd_testkit::daemon::logged_failure(log, error),
            "{}: the daemon log does not say {error:?}\n{log}",
            t.name
        );
    }
}

/// Waits until every target has had its one attempt.
async fn wait_for_attempts(client: &Client, n: usize, daemon: &Daemon) {
    wait_for_count(
        client,
        "SELECT count(*) FROM outbox.delivery_attempts",
        n as i64,
        Duration::from_secs(30),
        &[daemon],
    )
    .await;
}

#[tokio::test]
async fn refuses_loopback_private_and_metadata_targets_before_connecting() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let v4 = counting_listener("127.0.0.1:0").await;
    let v6 = ipv6_listener().await;
    let mut targets = loopback_targets(&v4, v6.as_ref());
    // Never contacted: the guard refuses the literal before any socket is made.
    targets.push(Target {
        name: "private",
        url: format!("http://10.0.0.5:{}/hook", v4.addr.port()),
        errors: vec!["blocked: 10.0.0.5 is private"],
    });
    targets.push(Target {
        name: "metadata",
        url: "http://169.254.169.254/latest/meta-data/".into(),
        errors: vec!["blocked: 169.254.169.254 is link-local"],
    });
    let ids = add_targets(&client, &targets).await;
    publish_many(&client, "order.created", 1).await;

    let daemon = Daemon::start(BIN, &db.url, STRICT);
    wait_for_attempts(&client, targets.len(), &daemon).await;

    assert_blocked_once(&client, &targets, &ids, &daemon.log()).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.delivery_attempts WHERE status_code IS NOT NULL"
        )
        .await,
        0,
        "no attempt got a response"
    );
    assert_eq!(
        v4.connections(),
        0,
        "nothing reached the 127.0.0.1 listener"
    );
    if let Some(v6) = &v6 {
        assert_eq!(v6.connections(), 0, "nothing reached the [::1] listener");
    }
}

#[tokio::test]
async fn blocked_deliveries_go_out_when_a_daemon_starts_allowing_them_without_a_replay() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let v4 = counting_listener("127.0.0.1:0").await;
    let v6 = ipv6_listener().await;
    let targets = loopback_targets(&v4, v6.as_ref());
    let ids = add_targets(&client, &targets).await;
    publish_many(&client, "order.created", 1).await;

    let mut strict = Daemon::start(BIN, &db.url, STRICT);
    wait_for_attempts(&client, targets.len(), &strict).await;
    assert_blocked_once(&client, &targets, &ids, &strict.log()).await;
    strict.terminate();
    assert!(
        strict.wait(Duration::from_secs(10)).await.is_some(),
        "the daemon did not stop on SIGTERM\n{}",
        strict.log()
    );
    assert_eq!(v4.connections(), 0);

    // The admin widens the allowlist and restarts; the next retry was an
    // hour away, and no one replays.
    let allowing = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_ALLOW_PRIVATE_TARGETS", LOOPBACK),
            ("OUTBOXD_RETRY_BASE_DELAY", "1h"),
            ("OUTBOXD_RETRY_MAX_DELAY", "2h"),
        ],
    );
    wait_for_deliveries_in(
        &client,
        DeliveryState::Delivered,
        targets.len() as i64,
        &[&allowing],
    )
    .await;
    for (t, &id) in targets.iter().zip(&ids) {
        let rows = attempts_of_webhook(&client, id).await;
        assert_eq!(rows.len(), 2, "{}: {rows:?}", t.name);
        assert_eq!(
            rows[1],
            Attempt {
                attempt: 2,
                status_code: Some(200),
                error: None,
                outcome: "delivered".into(),
            },
            "{}: the retry is the second attempt",
            t.name
        );
    }
    // 127.0.0.1, ::ffff:127.0.0.1 and localhost all land on the IPv4 listener.
    assert!(v4.connections() >= 3, "{} connections", v4.connections());
    if let Some(v6) = &v6 {
        assert!(v6.connections() >= 1, "[::1] got no connection");
    }
    assert!(
        allowing
            .log()
            .contains("deliveries refused by the SSRF guard are retried now"),
        "{}",
        allowing.log()
    );
}

#[tokio::test]
async fn refused_attempts_do_not_trip_the_circuit_breaker() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let v4 = counting_listener("127.0.0.1:0").await;
    let url = format!("http://127.0.0.1:{}/hook", v4.addr.port());
    let (hook, _) = add_webhook(&client, "local", &url, &["*"]).await;
    publish_many(&client, "order.created", 3).await;

    // Two failures in a row would pause a webhook whose receiver fails.
    let daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_ALLOW_PRIVATE_TARGETS", ""),
            ("OUTBOXD_BREAKER_THRESHOLD", "2"),
            ("OUTBOXD_MAX_ATTEMPTS", "3"),
        ],
    );
    wait_for_deliveries_in(&client, DeliveryState::Failed, 3, &[&daemon]).await;
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        9,
        "every attempt of the budget was made: none was held back by a pause"
    );
    let paused = count(
        &client,
        &format!(
            "SELECT count(*) FROM outbox.webhook_health WHERE webhook_id = {hook} AND paused_until IS NOT NULL"
        ),
    )
    .await;
    assert_eq!(paused, 0, "the webhook was paused:\n{}", daemon.log());
    assert!(!daemon.log().contains("webhook paused"), "{}", daemon.log());
    assert_eq!(v4.connections(), 0);
}

#[tokio::test]
async fn the_allowlist_opens_only_the_ports_it_names_and_translated_addresses_are_refused() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let open = counting_listener("127.0.0.1:0").await;
    let closed = counting_listener("127.0.0.1:0").await;
    let port = open.addr.port();
    let allowed = [
        ("literal", format!("http://127.0.0.1:{port}/hook")),
        // A name is judged after resolution, with the URL's port.
        ("name", format!("http://localhost:{port}/hook")),
    ];
    let targets = vec![
        Target {
            name: "other-port",
            url: format!("http://127.0.0.1:{}/hook", closed.addr.port()),
            errors: vec!["blocked: 127.0.0.1 is loopback"],
        },
        Target {
            // IPv4-translated (::ffff:0:0/96), embedding 127.0.0.1.
            name: "translated",
            url: format!("http://[::ffff:0:127.0.0.1]:{port}/hook"),
            errors: vec!["blocked: ::ffff:0:7f00:1 is loopback"],
        },
    ];
    for (name, url) in &allowed {
        add_webhook(&client, name, url, &["*"]).await;
    }
    let ids = add_targets(&client, &targets).await;
    publish_many(&client, "order.created", 1).await;

    let entry = format!("127.0.0.1:{port}");
    let env = [STRICT, &[("OUTBOXD_ALLOW_PRIVATE_TARGETS", &entry)]].concat();
    let daemon = Daemon::start(BIN, &db.url, &env);
    wait_for_attempts(&client, allowed.len() + targets.len(), &daemon).await;
    wait_for_deliveries_in(
        &client,
        DeliveryState::Delivered,
        allowed.len() as i64,
        &[&daemon],
    )
    .await;
    assert_blocked_once(&client, &targets, &ids, &daemon.log()).await;
    assert_eq!(
        closed.connections(),
        0,
        "nothing reached the port not named"
    );
    assert_eq!(open.connections(), allowed.len());
}
