//! Endpoints that accept a request and never answer, beside a healthy one,
//! with a small global pool (`OUTBOXD_CONCURRENCY`): the hanging webhooks
//! hold their share of the pool and no more, and the healthy webhook's
//! events arrive at once, not as hanging requests time out. Real daemon,
//! real receivers on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, publish_many};
use outboxd_testkit::raw::{self, RawServer};
use outboxd_testkit::{wait_for_count, wait_until, Daemon, Receiver, TestDb};

use crate::support::{ready, BIN};

const POOL: usize = 16;
const HANGING: usize = 4;
/// Far longer than the test: no hanging request ends while it runs.
const TIMEOUT: &str = "60s";

/// A server that reads each request and never answers; counts the requests
/// it holds open, per path.
async fn hanging_server() -> (RawServer, Arc<Mutex<HashMap<String, usize>>>) {
    let held = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let server = RawServer::start("127.0.0.1:0", {
        let held = held.clone();
        move |mut s, _| {
            let held = held.clone();
            async move {
                let Some(head) = raw::read_request(&mut s).await else {
                    return;
                };
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                *held.lock().unwrap().entry(path.clone()).or_default() += 1;
                raw::wait_for_close(&mut s).await;
                *held.lock().unwrap().entry(path).or_default() -= 1;
            }
        }
    })
    .await;
    (server, held)
}

/// The hanging webhooks (`hang.*`, one path each) and the healthy one
/// (`ok.*`).
async fn webhooks(client: &tokio_postgres::Client, server: &RawServer) -> Receiver {
    for i in 0..HANGING {
        let url = server.url(&format!("/hang{i}"));
        add_webhook(client, &format!("hang{i}"), &url, &["hang.*"]).await;
    }
    let healthy = Receiver::ok().await;
    add_webhook(client, "healthy", &healthy.url("/ok"), &["ok.*"]).await;
    healthy
}

/// A daemon with the small pool, ready.
async fn daemon(db: &TestDb) -> Daemon {
    let pool = POOL.to_string();
    let daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_CONCURRENCY", pool.as_str()),
            ("OUTBOXD_WEBHOOK_CONCURRENCY", "8"),
            ("OUTBOXD_REQUEST_TIMEOUT", TIMEOUT),
            ("OUTBOXD_LEASE", "120s"),
        ],
    );
    ready(&[&daemon]).await;
    daemon
}

/// Delivered deliveries of the healthy webhook.
const HEALTHY_DELIVERED: &str = "SELECT count(*) FROM outbox.deliveries d
  JOIN outbox.webhooks w ON w.id = d.webhook_id
 WHERE w.name = 'healthy' AND d.state = 'delivered'";

fn total(held: &Mutex<HashMap<String, usize>>) -> usize {
    held.lock().unwrap().values().sum()
}

#[tokio::test]
async fn a_healthy_webhook_is_served_at_once_while_hanging_ones_hold_the_pool() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (server, held) = hanging_server().await;
    let healthy = webhooks(&client, &server).await;
    let daemon = daemon(&db).await;

    // The hanging webhooks want 32 slots of 16: they get their share (the
    // pool but one slot kept for a newcomer), each at most 4.
    publish_many(&client, "hang.event", 100).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            total(&held) == POOL - 1
        })
        .await,
        "hanging requests held: {:?}\n{}",
        held.lock().unwrap(),
        daemon.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(total(&held), POOL - 1, "{:?}", held.lock().unwrap());
    for (path, &n) in held.lock().unwrap().iter() {
        assert!(n <= POOL / HANGING, "{path} holds {n} requests");
    }

    // The healthy webhook's events arrive while every hanging request is
    // still held, well before any of them times out.
    let started = Instant::now();
    publish_many(&client, "ok.event", 50).await;
    wait_for_count(
        &client,
        HEALTHY_DELIVERED,
        50,
        Duration::from_secs(20),
        &[&daemon],
    )
    .await;
    let took = started.elapsed();
    eprintln!("50 healthy events beside {HANGING} hanging webhooks: delivered in {took:.2?}");
    assert!(
        took < Duration::from_secs(5),
        "the healthy webhook took {took:?} (request timeout {TIMEOUT})"
    );
    assert_eq!(healthy.count(), 50);
    assert_eq!(total(&held), POOL - 1, "a hanging request ended early");
}

#[tokio::test]
async fn hanging_webhooks_beside_a_busy_healthy_one_keep_to_their_share() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (server, held) = hanging_server().await;
    let healthy = webhooks(&client, &server).await;
    // Both kinds have work from the start.
    publish_many(&client, "hang.event", 100).await;
    publish_many(&client, "ok.event", 2000).await;
    let daemon = daemon(&db).await;
    let started = Instant::now();
    wait_for_count(
        &client,
        HEALTHY_DELIVERED,
        2000,
        Duration::from_secs(30),
        &[&daemon],
    )
    .await;
    let took = started.elapsed();
    eprintln!("2000 healthy events beside {HANGING} hanging webhooks: delivered in {took:.2?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(healthy.count(), 2000);
    // Five webhooks, 16 slots, one kept for a newcomer: 3 each, and a
    // hanging one that came first may hold an extra.
    let held = held.lock().unwrap().clone();
    assert_eq!(held.len(), HANGING, "{held:?}");
    for (path, &n) in &held {
        assert!((2..=4).contains(&n), "{path} holds {n} requests: {held:?}");
    }
}
