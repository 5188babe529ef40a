//! Many webhooks, large payloads, and a flood of change notifications: the
//! daemon's cost and correctness with 10,000 webhooks cached, webhooks
//! disabled and deleted while their deliveries wait, a webhook added beside
//! them reaching every replica within a second, memory bounded by the bytes
//! in flight, and 200,000 notifications costing a few queries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::raw::{read_request, RawServer};
use outboxd_testkit::receiver::{Receiver, Reply};
use outboxd_testkit::{wait_for_count, wait_until, Daemon, TestDb};
use tokio_postgres::Client;

use crate::support::{ready, BIN};

/// `n` webhooks `bulk-<i>`, each subscribed to `t<i>.*`, all at `url`.
async fn add_many_webhooks(client: &Client, n: i64, url: &str) {
    client
        .execute(
            "INSERT INTO outbox.webhooks (name, url, event_types)
             SELECT 'bulk-' || i, $1, ARRAY['t' || i || '.*'] FROM generate_series(1, $2::int8) AS i",
            &[&url, &n],
        )
        .await
        .expect("adding webhooks");
}

/// Publishes a `late.created` event and waits until the `late` webhook has
/// `delivered` deliveries in all.
async fn publish_late_and_wait(client: &Client, late: i64, delivered: i64, daemon: &Daemon) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload) VALUES ('late.created', '{}')",
            &[],
        )
        .await
        .unwrap();
    wait_for_count(
        client,
        &format!(
            "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {late} AND state = 'delivered'"
        ),
        delivered,
        Duration::from_secs(20),
        &[daemon],
    )
    .await;
}

/// Sends SIGSTOP or SIGCONT.
fn signal(d: &Daemon, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &d.pid().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test]
async fn a_webhook_added_beside_10000_others_receives_within_a_second_on_two_replicas() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_many_webhooks(&client, 10_000, &receiver.url("/bulk")).await;
    let a = Daemon::start(BIN, &db.url, &[("OUTBOXD_POLL_INTERVAL", "10s")]);
    let b = Daemon::start(BIN, &db.url, &[("OUTBOXD_POLL_INTERVAL", "10s")]);
    ready(&[&a, &b]).await;

    let (late, _) = add_webhook(&client, "late", &receiver.url("/late"), &["late.*"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One replica at a time fans out: an event each, the other frozen, so
    // each replica's cache must have the new webhook by now.
    for (running, frozen, n) in [(&a, &b, 1i64), (&b, &a, 2)] {
        signal(frozen, "-STOP");
        publish_late_and_wait(&client, late, n, running).await;
        signal(frozen, "-CONT");
    }
    assert_eq!(
        receiver
            .requests()
            .iter()
            .filter(|r| r.path == "/late")
            .count(),
        2
    );
}

#[tokio::test]
async fn ten_thousand_webhooks_with_some_disabled_and_deleted_mid_run_deliver_the_rest_exactly_once(
) {
    const WEBHOOKS: i64 = 10_000;
    let db = TestDb::new().await;
    let client = db.client().await;
    // The victims answer slowly, so their deliveries are still waiting when
    // they are disabled or deleted.
    let receiver = Receiver::start(|r| {
        if r.path == "/victim" {
            Reply::ok().after(Duration::from_millis(500))
        } else {
            Reply::ok()
        }
    })
    .await;
    add_many_webhooks(&client, WEBHOOKS, &receiver.url("/bulk")).await;
    let victims: Vec<i64> = client
        .query(
            "UPDATE outbox.webhooks SET url = $1 WHERE name IN
               ('bulk-17', 'bulk-2500', 'bulk-5003', 'bulk-7777', 'bulk-9999')
             RETURNING id",
            &[&receiver.url("/victim")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(victims.len(), 5);
    // Two events per webhook, and 40 more for each victim.
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT 't' || i || '.created', jsonb_build_object('n', k)
               FROM generate_series(1, $1::int8) AS i, generate_series(1, 2) AS k",
            &[&WEBHOOKS],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT 't' || substr(w.name, 6) || '.extra', '{}'
               FROM outbox.webhooks w, generate_series(1, 40)
              WHERE w.id = ANY($1)",
            &[&victims],
        )
        .await
        .unwrap();

    let env = [
        ("OUTBOXD_WEBHOOK_CONCURRENCY", "1"),
        ("OUTBOXD_LEASE", "60s"),
    ];
    let a = Daemon::start(BIN, &db.url, &env);
    let b = Daemon::start(BIN, &db.url, &env);
    ready(&[&a, &b]).await;
    // Every event fanned out, the victims' deliveries mostly waiting.
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries",
        2 * WEBHOOKS + 5 * 40,
        Duration::from_secs(120),
        &[&a, &b],
    )
    .await;
    client
        .execute(
            "UPDATE outbox.webhooks SET enabled = false WHERE id = ANY($1)",
            &[&&victims[..3]],
        )
        .await
        .unwrap();
    client
        .execute(
            "DELETE FROM outbox.webhooks WHERE id = ANY($1)",
            &[&&victims[3..]],
        )
        .await
        .unwrap();

    let others = format!(
        "SELECT count(*) FROM outbox.deliveries
          WHERE state = 'delivered' AND NOT webhook_id = ANY('{{{}}}'::int8[])",
        victims
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    wait_for_count(
        &client,
        &others,
        2 * (WEBHOOKS - 5),
        Duration::from_secs(300),
        &[&a, &b],
    )
    .await;
    // The victims' deliveries all end: none is waiting or leased, the
    // waiting ones were cancelled.
    let settled = wait_until(Duration::from_secs(30), || async {
        count(
            &client,
            &format!(
                "SELECT count(*) FROM outbox.deliveries
                  WHERE state IN ('pending', 'in_flight')
                    AND webhook_id IN ({})",
                victims
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        )
        .await
            == 0
    })
    .await;
    assert!(settled, "victims' deliveries still open\n{}", a.log());
    let cancelled = count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'cancelled'",
    )
    .await;
    let states: Vec<(String, i64)> = client
        .query(
            "SELECT state, count(*) FROM outbox.deliveries WHERE webhook_id = ANY($1) GROUP BY 1",
            &[&victims],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        cancelled > 0,
        "waiting deliveries were cancelled: {states:?}"
    );

    // Every other delivery reached its receiver exactly once, logged once.
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests().iter().filter(|r| r.path == "/bulk") {
        *per_message
            .entry(r.header("webhook-id").to_owned())
            .or_default() += 1;
    }
    // webhook-id is per event; each bulk event has exactly one subscriber.
    assert_eq!(per_message.len() as i64, 2 * (WEBHOOKS - 5));
    assert!(per_message.values().all(|&n| n == 1), "a duplicate request");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT delivery_id FROM outbox.delivery_attempts
              GROUP BY delivery_id HAVING count(*) > 1) x"
        )
        .await,
        0,
        "each delivery logged once"
    );
}

/// User plus system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn a_flood_of_webhook_notifications_costs_a_few_reloads() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_many_webhooks(&client, 1_000, &receiver.url("/bulk")).await;
    let d = Daemon::start(BIN, &db.url, &[]);
    ready(&[&d]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(d.pid());
    // Any role may notify; distinct payloads are not folded into one.
    client
        .execute(
            "SELECT pg_notify('outbox_webhooks', CASE WHEN i % 2 = 0 THEN '' ELSE i::text END)
               FROM generate_series(1, 200000) AS i",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spent = cpu_seconds(d.pid()) - before;
    assert!(
        spent < 1.5,
        "the daemon spent {spent:.2} CPU seconds on 200,000 notifications\n{}",
        d.log()
    );
    // And it still follows changes.
    let (late, _) = add_webhook(&client, "late", &receiver.url("/late"), &["late.*"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish_late_and_wait(&client, late, 1, &d).await;
}

/// The daemon's peak resident memory so far, in MB (VmHWM).
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

#[tokio::test]
async fn memory_stays_bounded_delivering_large_payloads_to_five_webhooks() {
    const EVENTS: i64 = 200;
    let db = TestDb::new().await;
    let client = db.client().await;
    // A receiver that reads each request and forgets it (the test process
    // would otherwise keep 2.5 GB of bodies).
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let server = RawServer::start("127.0.0.1:0", move |mut stream, _| {
        let counter = counter.clone();
        async move {
            while read_request(&mut stream).await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
                let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    for i in 0..5 {
        add_webhook(&client, &format!("big-{i}"), &server.url("/big"), &["*"]).await;
    }
    // Incompressible payloads just under the 1 MiB limit: hex of random
    // digests, which pglz cannot shrink.
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT 'blob.created',
                    jsonb_build_object('blob', (SELECT string_agg(md5(random()::text || i || k), '')
                                                 FROM generate_series(1, 31000) AS k))
               FROM generate_series(1, $1::int8) AS i",
            &[&EVENTS],
        )
        .await
        .unwrap();
    let d = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_REQUEST_TIMEOUT", "30s"),
            ("OUTBOXD_LEASE", "120s"),
        ],
    );
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        5 * EVENTS,
        Duration::from_secs(600),
        &[&d],
    )
    .await;
    assert_eq!(received.load(Ordering::SeqCst), 5 * EVENTS as usize);
    let peak = peak_rss_mb(d.pid());
    assert!(
        peak <= 256.0,
        "peak RSS {peak:.0} MB delivering 1 MiB payloads to 5 webhooks"
    );
}

#[tokio::test]
async fn partitions_rotate_while_delivering_and_retention_keeps_what_is_younger() {
    const RETENTION_S: i64 = 20;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "steady", &receiver.url("/steady"), &["*"]).await;
    // History from before the upgrade, in the partition the migration made
    // of the old table: it goes whole once the cut-over is old enough.
    let before_v14 = "SELECT count(*) FROM outbox.attempt_partitions WHERE name = 'delivery_attempts_before_v14'";
    assert_eq!(count(&client, before_v14).await, 1);
    let d = Daemon::start(BIN, &db.url, &[("OUTBOXD_RETENTION", "20s")]);
    ready(&[&d]).await;

    // 50 events a second for 45 s; every few seconds, every attempt younger
    // than the retention must still be readable.
    let mut published = 0i64;
    let started = std::time::Instant::now();
    let mut min_partitions_seen = i64::MAX;
    while started.elapsed() < Duration::from_secs(45) {
        client
            .execute(
                "INSERT INTO outbox.events (event_type, payload)
                 SELECT 'tick.created', jsonb_build_object('n', i) FROM generate_series(1, 5) AS i",
                &[],
            )
            .await
            .unwrap();
        published += 5;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if published % 250 == 0 {
            let missing = count(
                &client,
                &format!(
                    "SELECT count(*) FROM outbox.deliveries d
                      WHERE d.state = 'delivered'
                        AND d.delivered_at > now() - interval '{RETENTION_S} seconds' + interval '1 second'
                        AND NOT EXISTS (SELECT 1 FROM outbox.delivery_attempts a
                                         WHERE a.delivery_id = d.id AND a.outcome = 'delivered')"
                ),
            )
            .await;
            assert_eq!(
                missing, 0,
                "attempts younger than the retention were retired"
            );
            min_partitions_seen = min_partitions_seen
                .min(count(&client, "SELECT count(*) FROM outbox.attempt_partitions").await);
        }
    }
    wait_for_count(
        &client,
        "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'",
        count(&client, "SELECT count(*) FROM outbox.deliveries").await,
        Duration::from_secs(30),
        &[&d],
    )
    .await;
    // Nothing lost, nothing twice (of what retention has not taken yet).
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in receiver.requests() {
        *seen.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len() as i64, published, "every event delivered");
    assert!(seen.values().all(|&n| n == 1), "an event delivered twice");
    // Old partitions went; the pre-upgrade one too; attempts older than
    // the retention and its partition's width are gone.
    assert_eq!(count(&client, before_v14).await, 0, "\n{}", d.log());
    let old = count(
        &client,
        &format!(
            "SELECT count(*) FROM outbox.delivery_attempts
              WHERE started_at < now() - interval '{RETENTION_S} seconds' - interval '15 seconds'
                AND tableoid <> 'outbox.delivery_attempts_default'::regclass"
        ),
    )
    .await;
    assert_eq!(
        old, 0,
        "attempts past the retention and a partition's width"
    );
    assert!(
        count(&client, "SELECT count(*) FROM outbox.attempt_partitions").await <= 12,
        "partitions are retired, not piling up"
    );
    assert!(min_partitions_seen >= 2, "partitions were made ahead");
}
