//! Fresh events beside a backlog of retries, and a webhook's backlog after
//! an outage: first attempts and retries go in separate lanes, so fresh
//! events arrive within a second while the backlog drains, and a webhook
//! whose breaker opened drains its backlog, retries scheduled hours ahead
//! included, about as fast as it can once its endpoint is back. Real
//! daemon, real receiver; the backlogs are made in SQL, as an outage
//! leaves them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::{wait_for_count, wait_until, Daemon, Receiver, Reply, TestDb};
use tokio_postgres::Client;

use crate::support::BIN;

/// A receiver that takes `delay` per request and answers 500 while
/// `failing` is set, else 200: with a few request slots, a throughput the
/// test knows the order of.
async fn receiver(delay: Duration, failing: Arc<AtomicBool>) -> Receiver {
    Receiver::start(move |_| {
        if failing.load(Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok().after(delay)
        }
    })
    .await
}

/// Makes `n` deliveries of `webhook_id` waiting for a retry, their events
/// already fanned out: `pending`, one to eight attempts spent, due at
/// `next_attempt_at` (SQL over `i`, 1 to `n`). Returns their event ids.
async fn backlog(client: &Client, webhook_id: i64, n: i64, next_attempt_at: &str) -> Vec<i64> {
    let sql = format!(
        "WITH e AS (
             INSERT INTO outbox.events (event_type, payload, dispatched_at)
             SELECT 'order.retried', jsonb_build_object('n', i), now()
               FROM generate_series(1, $2::int8) AS i
             RETURNING id),
         n AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM e)
         INSERT INTO outbox.deliveries
                (event_id, webhook_id, state, attempts, next_attempt_at, last_status)
         SELECT n.id, $1, 'pending', 1 + (n.i % 8)::int4, {next_attempt_at}, 500 FROM n
         RETURNING event_id"
    );
    client
        .query(&sql, &[&webhook_id, &n])
        .await
        .expect("making a backlog of retries")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The event id a request carried.
fn event_id(r: &outboxd_testkit::Received) -> i64 {
    r.header("webhook-id")
        .strip_prefix("evt_")
        .and_then(|id| id.parse().ok())
        .expect("a webhook-id of evt_<id>")
}

/// Asserts that every event in `events` reached the receiver exactly once.
fn exactly_once(receiver: &Receiver, events: impl IntoIterator<Item = i64>) {
    let mut got: HashMap<i64, usize> = HashMap::new();
    for r in receiver.requests() {
        *got.entry(event_id(&r)).or_default() += 1;
    }
    for id in events {
        assert_eq!(
            got.get(&id),
            Some(&1),
            "event {id} must arrive exactly once"
        );
    }
}

#[tokio::test]
async fn fresh_events_arrive_within_a_second_while_a_retry_backlog_drains() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // 4 slots of 5 ms: at most 800 requests a second, so 4,000 retries
    // take at least five seconds.
    let rx = receiver(Duration::from_millis(5), Arc::new(AtomicBool::new(false))).await;
    let (hook, _) = add_webhook(&client, "busy", &rx.url("/busy"), &["*"]).await;
    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_WEBHOOK_CONCURRENCY", "4")]);
    let ready = wait_until(Duration::from_secs(20), || async {
        count(
            &client,
            "SELECT count(*) FROM outbox.wakeup WHERE requested",
        )
        .await
            == 1
    })
    .await;
    assert!(ready, "the daemon did not become idle:\n{}", daemon.log());

    let retries = backlog(&client, hook, 4000, "now() - interval '1 minute'").await;
    let retried: std::collections::HashSet<i64> = retries.iter().copied().collect();
    // Once the backlog fills the window, fresh events at 20 a second.
    let filled = wait_until(Duration::from_secs(10), || async { rx.count() >= 100 }).await;
    assert!(filled, "the backlog is not being sent:\n{}", daemon.log());
    let publish = client
        .prepare(
            "INSERT INTO outbox.events (event_type, payload) VALUES ('order.created', '{}') RETURNING id",
        )
        .await
        .unwrap();
    let mut committed = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..60 {
        tick.tick().await;
        let id: i64 = client.query_one(&publish, &[]).await.unwrap().get(0);
        committed.push((id, Instant::now()));
    }
    let last_published = Instant::now();
    wait_for_count(
        &client,
        &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {hook} AND state = 'delivered'"),
        4060,
        Duration::from_secs(60),
        &[&daemon],
    )
    .await;

    let requests = rx.requests();
    let arrived: HashMap<i64, Instant> = requests.iter().map(|r| (event_id(r), r.at)).collect();
    let last_retry = requests
        .iter()
        .filter(|r| retried.contains(&event_id(r)))
        .map(|r| r.at)
        .max()
        .unwrap();
    assert!(
        last_retry > last_published,
        "the backlog drained before the fresh events were all published: the test shows nothing"
    );
    // And it kept draining beside them (at 4 slots of 5 ms, up to 800 a
    // second; a busy machine gets less, never nothing).
    let first_published = committed[0].1;
    let beside = requests
        .iter()
        .filter(|r| {
            retried.contains(&event_id(r)) && r.at >= first_published && r.at <= last_published
        })
        .count();
    let window = last_published.duration_since(first_published).as_secs_f64();
    assert!(
        beside as f64 >= 100.0 * window,
        "only {beside} retries sent in the {window:.1} s fresh events were published"
    );
    let mut slow = Vec::new();
    for (id, at) in &committed {
        let latency = arrived[id].duration_since(*at);
        if latency > Duration::from_secs(1) {
            slow.push((*id, latency));
        }
    }
    assert!(
        slow.is_empty(),
        "fresh events later than a second beside the backlog: {slow:?}"
    );
    exactly_once(
        &rx,
        retries.iter().copied().chain(committed.iter().map(|c| c.0)),
    );
}

#[tokio::test]
async fn a_recovered_webhook_drains_its_backlog_within_backlog_over_throughput_and_a_pause() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let failing = Arc::new(AtomicBool::new(false));
    let rx = receiver(Duration::from_millis(5), failing.clone()).await;
    let (hook, _) = add_webhook(&client, "flaky", &rx.url("/flaky"), &["*"]).await;
    let cooldown = Duration::from_secs(2);
    let daemon = Daemon::start(
        BIN,
        &db.url,
        &[
            ("OUTBOXD_WEBHOOK_CONCURRENCY", "4"),
            ("OUTBOXD_BREAKER_THRESHOLD", "3"),
            ("OUTBOXD_BREAKER_COOLDOWN", "2s"),
        ],
    );
    let delivered = |n: i64| {
        let client = &client;
        let daemon = &daemon;
        async move {
            wait_for_count(
                client,
                &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {hook} AND state = 'delivered'"),
                n,
                Duration::from_secs(60),
                &[daemon],
            )
            .await
        }
    };
    // The webhook's throughput, measured: 1,000 retries due now.
    let started = Instant::now();
    backlog(&client, hook, 1000, "now()").await;
    delivered(1000).await;
    let throughput = 1000.0 / started.elapsed().as_secs_f64();

    // The endpoint goes down: retries scheduled hours ahead by their
    // backoff, and a few due now that open the breaker.
    failing.store(true, Ordering::SeqCst);
    backlog(
        &client,
        hook,
        2000,
        "now() + (1 + n.i % 6) * interval '1 hour'",
    )
    .await;
    backlog(&client, hook, 10, "now()").await;
    let paused = wait_until(Duration::from_secs(20), || async {
        count(
            &client,
            "SELECT count(*) FROM outbox.webhook_health WHERE paused_until > now()",
        )
        .await
            == 1
    })
    .await;
    assert!(paused, "the breaker did not open:\n{}", daemon.log());
    // The opening moved the whole backlog to the pause's end, those
    // scheduled hours ahead included: nothing is left to write when it
    // comes back.
    let moved = wait_until(Duration::from_secs(10), || async {
        count(
            &client,
            &format!(
                "SELECT count(*) FROM outbox.deliveries
                  WHERE webhook_id = {hook} AND state = 'pending'
                    AND next_attempt_at > now() + interval '1 minute'"
            ),
        )
        .await
            == 0
    })
    .await;
    assert!(
        moved,
        "retries scheduled hours ahead still wait for their time:\n{}",
        daemon.log()
    );

    // It comes back: the probe at the pause's end succeeds, and then the
    // whole backlog goes, those scheduled hours ahead included.
    failing.store(false, Ordering::SeqCst);
    let back = Instant::now();
    let waiting = 2010.0;
    // Slack: a poll interval for the probe's claim and one for the claim
    // after the recovery, and the noise of a shared machine.
    let bound = Duration::from_secs_f64(waiting / throughput) + cooldown + Duration::from_secs(4);
    let drained = wait_until(bound, || async {
        count(
            &client,
            &format!("SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {hook} AND state = 'delivered'"),
        )
        .await
            == 3010
    })
    .await;
    assert!(
        drained,
        "not drained within {bound:?} of the endpoint's return ({throughput:.0}/s, {:?} so far): {} waiting\n{}",
        back.elapsed(),
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state <> 'delivered'"
        )
        .await,
        daemon.log()
    );
    assert!(
        daemon.log().contains("pause lifted"),
        "the recovery is not logged:\n{}",
        daemon.log()
    );
    // Each delivery delivered by one attempt: nothing sent twice after the
    // recovery.
    let attempts_spent = count(
        &client,
        &format!(
            "SELECT count(*) FROM outbox.delivery_attempts WHERE webhook_id = {hook} AND outcome = 'delivered'"
        ),
    )
    .await;
    assert_eq!(attempts_spent, 3010, "one delivered attempt per delivery");
}
