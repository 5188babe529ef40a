//! Ordered delivery per key, as the receiver sees it: the events of one
//! ordering key arrive one at a time and in order through random failures,
//! two daemons and a SIGKILL; a poison event is skipped or halts its key
//! until an admin skips or replays it; a replay of an old event never runs
//! beside its key's current one; unordered webhooks beside are unaffected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::{wait_until, Daemon, Receiver, Reply, TestDb};
use tokio_postgres::Client;

use crate::support::{cli, delivered_counter, ready, BIN};

/// Fast retries, no breaker: the tests are about order, not pauses.
const FAST: [(&str, &str); 4] = [
    ("OUTBOXD_RETRY_BASE_DELAY", "20ms"),
    ("OUTBOXD_RETRY_MAX_DELAY", "100ms"),
    ("OUTBOXD_BREAKER_THRESHOLD", "0"),
    ("OUTBOXD_POLL_INTERVAL", "100ms"),
];

/// One request as the test's receiver answered it.
#[derive(Debug, Clone)]
struct Arrival {
    key: String,
    seq: i64,
    ok: bool,
    at: Instant,
    /// When the answer went back (the arrival plus the reply's delay).
    until: Instant,
}

/// A receiver whose answer to each request the test decides from the
/// event's key and sequence number; every answer is logged in arrival
/// order.
struct KeyedReceiver {
    receiver: Receiver,
    log: Arc<Mutex<Vec<Arrival>>>,
}

impl KeyedReceiver {
    async fn start(
        answer: impl Fn(&str, i64) -> (bool, Duration) + Send + Sync + 'static,
    ) -> KeyedReceiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let receiver = {
            let log = log.clone();
            Receiver::start(move |r| {
                let data = &r.json()["data"];
                let key = data["key"].as_str().unwrap_or("").to_owned();
                let seq = data["seq"].as_i64().unwrap_or(-1);
                let (ok, delay) = answer(&key, seq);
                log.lock().unwrap().push(Arrival {
                    key,
                    seq,
                    ok,
                    at: r.at,
                    until: r.at + delay,
                });
                let reply = if ok { Reply::ok() } else { Reply::status(500) };
                reply.after(delay)
            })
            .await
        };
        KeyedReceiver { receiver, log }
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.log.lock().unwrap().clone()
    }

    /// Distinct (key, seq) answered with a success.
    fn delivered(&self) -> usize {
        let log = self.log.lock().unwrap();
        let mut seen: Vec<(&str, i64)> = log
            .iter()
            .filter(|a| a.ok)
            .map(|a| (a.key.as_str(), a.seq))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// Per key, in arrival order: an event arrives only once every earlier
/// event of its key was answered with a success; `duplicates` allows the
/// last delivered one to arrive again (a result lost to a SIGKILL).
/// Returns the successful receipts per (key, seq).
fn assert_in_key_order(arrivals: &[Arrival], duplicates: bool) -> HashMap<(String, i64), usize> {
    let mut next: HashMap<&str, i64> = HashMap::new();
    let mut receipts: HashMap<(String, i64), usize> = HashMap::new();
    for (i, a) in arrivals.iter().enumerate() {
        let expected = next.entry(&a.key).or_default();
        let repeat = duplicates && a.seq == *expected - 1;
        assert!(
            a.seq == *expected || repeat,
            "arrival #{i}: key {} event {} came while event {} was not delivered yet",
            a.key,
            a.seq,
            expected
        );
        if a.ok {
            *receipts.entry((a.key.clone(), a.seq)).or_default() += 1;
            if a.seq == *expected {
                *expected += 1;
            }
        }
    }
    receipts
}

/// The most requests of one key the receiver was answering at once.
fn most_at_once_per_key(arrivals: &[Arrival]) -> usize {
    let mut by_key: HashMap<&str, Vec<(Instant, Instant)>> = HashMap::new();
    for a in arrivals {
        by_key.entry(&a.key).or_default().push((a.at, a.until));
    }
    by_key
        .values()
        .map(|spans| {
            spans
                .iter()
                .map(|&(at, _)| spans.iter().filter(|&&(s, u)| s <= at && at < u).count())
                .max()
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

async fn ordered(client: &Client, webhook: i64, policy: &str) {
    client
        .execute(
            "UPDATE outbox.webhooks SET ordered = true, ordering_policy = $2 WHERE id = $1",
            &[&webhook, &policy],
        )
        .await
        .expect("making the webhook ordered");
}

/// One event for each of `keys` keys (`k0`, `k1`, ...), sequence `seq`, in
/// one transaction: keys' events come in id order, round after round.
async fn publish_round(client: &Client, keys: i32, seq: i32) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, ordering_key)
             SELECT 'order.updated', jsonb_build_object('key', 'k' || k, 'seq', $2::int), 'k' || k
               FROM generate_series(0, $1 - 1) AS k ORDER BY k",
            &[&keys, &seq],
        )
        .await
        .expect("publishing a round of keyed events");
}

async fn wait_delivered(r: &KeyedReceiver, n: usize, within: Duration, daemons: &[&Daemon]) {
    let done = wait_until(within, || async { r.delivered() >= n }).await;
    let logs: Vec<String> = daemons.iter().map(|d| d.log()).collect();
    assert!(
        done,
        "{} of {n} events delivered\n{}",
        r.delivered(),
        logs.join("\n----\n")
    );
}

/// A fair coin of the receiver, without a random crate: a counter through
/// a mixing function (splitmix64), true with probability `p` in 1000.
fn chance(counter: &AtomicU64, per_mille: u64) -> bool {
    let mut z = counter
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1000 < per_mille
}

#[tokio::test]
async fn fifty_keys_arrive_in_order_through_random_failures_and_two_daemons() {
    const KEYS: i32 = 50;
    const EVENTS: i32 = 40;
    let db = TestDb::new().await;
    let client = db.client().await;
    let coin = Arc::new(AtomicU64::new(17));
    let r = {
        let coin = coin.clone();
        KeyedReceiver::start(move |_, _| (!chance(&coin, 300), Duration::ZERO)).await
    };
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, "skip").await;
    let a = Daemon::start(BIN, &db.url, &FAST);
    let b = Daemon::start(BIN, &db.url, &FAST);
    ready(&[&a, &b]).await;
    // Rounds published while the first ones are being delivered, so that
    // fan-outs meet heads finishing.
    for seq in 0..EVENTS {
        publish_round(&client, KEYS, seq).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = (KEYS * EVENTS) as usize;
    wait_delivered(&r, total, Duration::from_secs(180), &[&a, &b]).await;
    let arrivals = r.arrivals();
    let receipts = assert_in_key_order(&arrivals, false);
    assert_eq!(receipts.len(), total);
    assert!(
        receipts.values().all(|&n| n == 1),
        "an event was received successfully more than once"
    );
    assert!(
        arrivals.iter().filter(|a| !a.ok).count() > total / 10,
        "the receiver failed too few requests to test anything"
    );
    all_delivered_in_the_database(&client).await;
    // Both daemons delivered: the order held across replicas.
    let (by_a, by_b) = (delivered_counter(&a).await, delivered_counter(&b).await);
    assert!(by_a > 0 && by_b > 0, "delivered by a: {by_a}, by b: {by_b}");
}

/// Every delivery's result is written (the last ones land a moment after
/// the receiver answered).
async fn all_delivered_in_the_database(client: &Client) {
    let done = wait_until(Duration::from_secs(15), || async {
        count(
            client,
            "SELECT count(*) FROM outbox.deliveries WHERE state <> 'delivered'",
        )
        .await
            == 0
    })
    .await;
    assert!(done, "deliveries left undelivered in the database");
}

#[tokio::test]
async fn order_is_kept_when_a_daemon_is_killed_mid_run() {
    const KEYS: i32 = 20;
    const EVENTS: i32 = 30;
    let db = TestDb::new().await;
    let client = db.client().await;
    let r = KeyedReceiver::start(|_, _| (true, Duration::from_millis(30))).await;
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, "skip").await;
    let env: Vec<(&str, &str)> = FAST
        .iter()
        .copied()
        .chain([("OUTBOXD_LEASE", "3s"), ("OUTBOXD_REQUEST_TIMEOUT", "2s")])
        .collect();
    let mut a = Daemon::start(BIN, &db.url, &env);
    let b = Daemon::start(BIN, &db.url, &env);
    ready(&[&a, &b]).await;
    for seq in 0..EVENTS {
        publish_round(&client, KEYS, seq).await;
    }
    let total = (KEYS * EVENTS) as usize;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            r.delivered() >= total / 3
        })
        .await,
        "too little delivered before the kill\n{}",
        a.log()
    );
    a.kill9().await;
    let at_kill = r.delivered();
    assert!(
        at_kill < total,
        "the kill came too late ({at_kill} delivered)"
    );
    let a2 = Daemon::start(BIN, &db.url, &env);
    wait_delivered(&r, total, Duration::from_secs(120), &[&a2, &b]).await;
    let receipts = assert_in_key_order(&r.arrivals(), true);
    assert_eq!(receipts.len(), total, "every event delivered");
    all_delivered_in_the_database(&client).await;
}

/// Three keys of five events; event 2 of key k1 always gets a 500.
async fn poison_run(policy: &str) -> (TestDb, KeyedReceiver, Daemon, i64, Arc<AtomicBool>) {
    let db = TestDb::new().await;
    let client = db.client().await;
    let cured = Arc::new(AtomicBool::new(false));
    let r = {
        let cured = cured.clone();
        KeyedReceiver::start(move |key, seq| {
            let poison = key == "k1" && seq == 2 && !cured.load(Ordering::SeqCst);
            (!poison, Duration::ZERO)
        })
        .await
    };
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, policy).await;
    let env: Vec<(&str, &str)> = FAST
        .iter()
        .copied()
        .chain([("OUTBOXD_MAX_ATTEMPTS", "3")])
        .collect();
    let d = Daemon::start(BIN, &db.url, &env);
    ready(&[&d]).await;
    for seq in 0..5 {
        publish_round(&client, 3, seq).await;
    }
    (db, r, d, webhook, cured)
}

/// What k1 of `poison_run` receives up to its poison event's last attempt:
/// events 0 and 1, then event 2 failing three times.
const HALTED_K1: &[(i64, bool)] = &[(0, true), (1, true), (2, false), (2, false), (2, false)];

fn seqs_of(arrivals: &[Arrival], key: &str) -> Vec<(i64, bool)> {
    arrivals
        .iter()
        .filter(|a| a.key == key)
        .map(|a| (a.seq, a.ok))
        .collect()
}

#[tokio::test]
async fn a_poison_event_under_skip_fails_and_its_key_goes_on_after_it() {
    let (db, r, d, _, _) = poison_run("skip").await;
    // 15 events, one of which fails for good.
    wait_delivered(&r, 14, Duration::from_secs(60), &[&d]).await;
    let k1 = seqs_of(&r.arrivals(), "k1");
    assert_eq!(
        k1,
        [HALTED_K1, &[(3, true), (4, true)]].concat(),
        "k1's later events go after its poison event failed for good"
    );
    let client = db.client().await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'failed'"
        )
        .await,
        1
    );
}

/// Under halt: the key waits behind its poison event and is listed as
/// halted, the other keys go on.
async fn halted_run() -> (TestDb, KeyedReceiver, Daemon, Arc<AtomicBool>, i64) {
    let (db, r, d, webhook, cured) = poison_run("halt").await;
    // k0 and k2 whole, k1's first two.
    wait_delivered(&r, 12, Duration::from_secs(60), &[&d]).await;
    let client = db.client().await;
    let listed = wait_until(Duration::from_secs(10), || async {
        count(&client, "SELECT count(*) FROM outbox.halted_keys").await == 1
    })
    .await;
    assert!(listed, "the halted key is listed\n{}", d.log());
    // Nothing more of k1 goes meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let k1 = seqs_of(&r.arrivals(), "k1");
    assert_eq!(
        k1,
        [(0, true), (1, true), (2, false), (2, false), (2, false)]
    );
    let row = client
        .query_one(
            "SELECT webhook_id, ordering_key, event_type, waiting, last_status, delivery_id
               FROM outbox.halted_keys",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), webhook);
    assert_eq!(row.get::<_, &str>(1), "k1");
    assert_eq!(row.get::<_, Option<&str>>(2), Some("order.updated"));
    assert_eq!(row.get::<_, i64>(3), 2, "events 3 and 4 wait");
    assert_eq!(row.get::<_, Option<i32>>(4), Some(500));
    let delivery: i64 = row.get(5);
    (db, r, d, cured, delivery)
}

#[tokio::test]
async fn a_poison_event_under_halt_waits_until_skipped() {
    let (db, r, d, _, delivery) = halted_run().await;
    let client = db.client().await;
    // Only the delivery that halts the key can be skipped.
    let other: i64 = client
        .query_one(
            "SELECT id FROM outbox.deliveries WHERE state = 'delivered' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let e = client
        .query_one("SELECT outbox.skip_halted($1)", &[&other])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("P0002"));
    // The CLI lists the key and refuses to skip what halts nothing.
    let listed = cli(&db, &["keys", "halted", "--json"]).await;
    assert!(listed.ok(), "{}", listed.stderr);
    let keys: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(keys[0]["delivery_id"], delivery, "{}", listed.stdout);
    assert_eq!(keys[0]["ordering_key"], "k1");
    assert_eq!(keys[0]["waiting"], 2);
    cli(&db, &["keys", "skip", &other.to_string()])
        .await
        .assert_one_line_error("is not halting a key");
    let skipped = cli(&db, &["keys", "skip", &delivery.to_string()]).await;
    assert!(
        skipped
            .stdout
            .contains("the next delivery of its key is pending"),
        "{}{}",
        skipped.stdout,
        skipped.stderr
    );
    wait_delivered(&r, 14, Duration::from_secs(30), &[&d]).await;
    let k1 = seqs_of(&r.arrivals(), "k1");
    assert_eq!(k1, [HALTED_K1, &[(3, true), (4, true)]].concat());
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.halted_keys").await,
        0
    );
    let state: String = client
        .query_one(
            "SELECT state FROM outbox.deliveries WHERE id = $1 AND released_at IS NOT NULL",
            &[&delivery],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "failed", "a skipped delivery stays failed");
}

#[tokio::test]
async fn a_replayed_halted_event_goes_first_then_the_rest_in_order() {
    let (db, r, d, cured, delivery) = halted_run().await;
    let client = db.client().await;
    cured.store(true, Ordering::SeqCst);
    let n: i32 = client
        .query_one("SELECT outbox.replay($1)", &[&delivery])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    wait_delivered(&r, 15, Duration::from_secs(30), &[&d]).await;
    let k1 = seqs_of(&r.arrivals(), "k1");
    assert_eq!(k1, [HALTED_K1, &[(2, true), (3, true), (4, true)]].concat());
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.halted_keys").await,
        0
    );
}

#[tokio::test]
async fn a_replay_of_an_old_event_waits_for_its_keys_current_delivery() {
    const EVENTS: i32 = 12;
    let db = TestDb::new().await;
    let client = db.client().await;
    let r = KeyedReceiver::start(|_, _| (true, Duration::from_millis(150))).await;
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, "skip").await;
    let a = Daemon::start(BIN, &db.url, &FAST);
    let b = Daemon::start(BIN, &db.url, &FAST);
    ready(&[&a, &b]).await;
    for seq in 0..EVENTS {
        publish_round(&client, 1, seq).await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || async { r.delivered() >= 3 }).await,
        "nothing delivered\n{}",
        a.log()
    );
    // Events 0 and 1 again, while the key is being delivered.
    let replayed: i32 = client
        .query_one(
            "SELECT sum(outbox.replay(d.id))::int4 FROM outbox.deliveries d
               JOIN outbox.events e ON e.id = d.event_id
              WHERE (e.payload->>'seq')::int < 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replayed, 2);
    let arrived = wait_until(Duration::from_secs(30), || async {
        r.arrivals().len() >= EVENTS as usize + 2
    })
    .await;
    assert!(arrived, "{:?}\n{}", r.arrivals(), a.log());
    let arrivals = r.arrivals();
    assert_eq!(
        most_at_once_per_key(&arrivals),
        1,
        "two requests of the key ran at once: {arrivals:?}"
    );
    let seqs: Vec<i64> = arrivals.iter().map(|a| a.seq).collect();
    assert_eq!(
        seqs.iter().filter(|&&s| s < 2).count(),
        4,
        "events 0 and 1 sent once more: {seqs:?}"
    );
    // The replays went right after the delivery in flight, before the
    // later events: apart from them, the key's events arrived in order.
    let rest: Vec<i64> = seqs.iter().copied().skip(2).filter(|&s| s >= 2).collect();
    assert!(rest.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let first_replay = seqs.iter().skip(2).position(|&s| s < 2).unwrap() + 2;
    assert!(
        seqs[first_replay..].iter().filter(|&&s| s >= 2).count() >= 1,
        "the replays went before the key's later events: {seqs:?}"
    );
}

#[tokio::test]
async fn unordered_webhooks_beside_ordered_ones_ignore_the_keys() {
    const KEYS: i32 = 5;
    const EVENTS: i32 = 20;
    let db = TestDb::new().await;
    let client = db.client().await;
    let o = KeyedReceiver::start(|_, _| (true, Duration::from_millis(20))).await;
    let u = KeyedReceiver::start(|_, _| (true, Duration::from_millis(20))).await;
    let (ow, _) = add_webhook(&client, "ordered", &o.receiver.url("/o"), &["*"]).await;
    let (uw, _) = add_webhook(&client, "unordered", &u.receiver.url("/u"), &["*"]).await;
    ordered(&client, ow, "skip").await;
    let d = Daemon::start(BIN, &db.url, &FAST);
    ready(&[&d]).await;
    for seq in 0..EVENTS {
        publish_round(&client, KEYS, seq).await;
    }
    let total = (KEYS * EVENTS) as usize;
    wait_delivered(&u, total, Duration::from_secs(60), &[&d]).await;
    wait_delivered(&o, total, Duration::from_secs(60), &[&d]).await;
    assert_in_key_order(&o.arrivals(), false);
    assert_eq!(most_at_once_per_key(&o.arrivals()), 1);
    assert!(
        most_at_once_per_key(&u.arrivals()) > 1,
        "the unordered webhook sends a key's events side by side"
    );
    let keyed = client
        .query_one(
            "SELECT count(*) FILTER (WHERE ordering_key IS NOT NULL) FROM outbox.deliveries
              WHERE webhook_id = $1",
            &[&uw],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(keyed, 0, "an unordered webhook's deliveries carry no key");
}

#[tokio::test]
async fn turning_ordered_off_releases_the_held_deliveries() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let gate = Arc::new(AtomicBool::new(false));
    let r = {
        let gate = gate.clone();
        KeyedReceiver::start(move |_, _| (gate.load(Ordering::SeqCst), Duration::ZERO)).await
    };
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, "skip").await;
    let env: Vec<(&str, &str)> = FAST
        .iter()
        .copied()
        .chain([("OUTBOXD_MAX_ATTEMPTS", "1000")])
        .collect();
    let d = Daemon::start(BIN, &db.url, &env);
    ready(&[&d]).await;
    for seq in 0..6 {
        publish_round(&client, 1, seq).await;
    }
    let held = wait_until(Duration::from_secs(20), || async {
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'held'",
        )
        .await
            == 5
    })
    .await;
    assert!(held, "five wait behind the first\n{}", d.log());
    client
        .execute(
            "UPDATE outbox.webhooks SET ordered = false WHERE id = $1",
            &[&webhook],
        )
        .await
        .unwrap();
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'held'"
        )
        .await,
        0,
        "turning ordered off releases them all"
    );
    gate.store(true, Ordering::SeqCst);
    wait_delivered(&r, 6, Duration::from_secs(30), &[&d]).await;
}

#[tokio::test]
async fn a_promoted_delivery_whose_daemon_is_killed_goes_again_after_its_lease_in_order() {
    const EVENTS: i32 = 6;
    let db = TestDb::new().await;
    let client = db.client().await;
    // Event 2's first request hangs: the daemon that sent it (promoted in
    // flight by its writer and handed to its loop) is killed meanwhile.
    let hung = Arc::new(AtomicBool::new(false));
    let r = {
        let hung = hung.clone();
        KeyedReceiver::start(move |_, seq| {
            let hang = seq == 2 && !hung.swap(true, Ordering::SeqCst);
            (
                true,
                if hang {
                    Duration::from_secs(30)
                } else {
                    Duration::ZERO
                },
            )
        })
        .await
    };
    let (webhook, _) = add_webhook(&client, "ordered", &r.receiver.url("/o"), &["*"]).await;
    ordered(&client, webhook, "skip").await;
    let env: Vec<(&str, &str)> = FAST
        .iter()
        .copied()
        .chain([("OUTBOXD_LEASE", "3s"), ("OUTBOXD_REQUEST_TIMEOUT", "2s")])
        .collect();
    let mut a = Daemon::start(BIN, &db.url, &env);
    ready(&[&a]).await;
    for seq in 0..EVENTS {
        publish_round(&client, 1, seq).await;
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            hung.load(Ordering::SeqCst)
        })
        .await,
        "event 2 was not sent\n{}",
        a.log()
    );
    a.kill9().await;
    let states: Vec<(i32, String, i32)> = client
        .query(
            "SELECT (e.payload->>'seq')::int, d.state, d.attempts
               FROM outbox.deliveries d JOIN outbox.events e ON e.id = d.event_id
              ORDER BY e.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        states[..3],
        [
            (0, "delivered".into(), 1),
            (1, "delivered".into(), 1),
            (2, "in_flight".into(), 1)
        ],
        "{states:?}"
    );
    assert!(states[3..].iter().all(|s| s.1 == "held"), "{states:?}");
    // Another daemon sends it again once the lease has expired, then the
    // rest in order.
    let b = Daemon::start(BIN, &db.url, &env);
    wait_delivered(&r, EVENTS as usize, Duration::from_secs(60), &[&b]).await;
    let arrivals = r.arrivals();
    let receipts = assert_in_key_order(&arrivals, true);
    assert_eq!(receipts.len(), EVENTS as usize);
    let seqs: Vec<i64> = arrivals.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 2, 3, 4, 5], "event 2 twice, in order");
    all_delivered_in_the_database(&client).await;
    let logged: Vec<(i32, i32, String)> = client
        .query(
            "SELECT (e.payload->>'seq')::int, a.attempt, a.outcome
               FROM outbox.delivery_attempts a JOIN outbox.events e ON e.id = a.event_id
              ORDER BY a.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        logged.iter().filter(|l| l.0 == 2).collect::<Vec<_>>(),
        [&(2, 2, "delivered".into())],
        "delivered once, by its second attempt (the first stays spent)"
    );
    assert_eq!(logged.len(), EVENTS as usize, "{logged:?}");
}
