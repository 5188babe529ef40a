//! End-to-end tests of database and process faults: PostgreSQL restarted in
//! the middle of a run, the daemon SIGKILLed again and again, a database that
//! is down (or still starting) when the daemon starts, and a pool far smaller
//! than the concurrency while a table is locked. Real PostgreSQL, real
//! receivers on 127.0.0.1, `outboxd run` as child processes. Tests that stop
//! PostgreSQL use a cluster of their own (`testkit::cluster`), never the
//! shared server the other tests use in parallel.
//!
//! Every test counts the requests that carried a `webhook-id` already seen
//! (duplicates), prints them, and checks them against what the fault could
//! have cut off: at-least-once delivery, with its cost bounded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::{wait_until, ClusterGuard, Daemon, Received, Receiver, Reply, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

use crate::support::BIN;

/// The cluster the restart tests stop and start; created on first use.
const CLUSTER: &str = "outboxd_faults";
const CLUSTER_PORT: u16 = 5433;

const DELIVERED: &str = "SELECT count(*) FROM outbox.deliveries WHERE state = 'delivered'";

/// The test's own cluster, or `None` (printed loudly) when this machine has
/// no PostgreSQL server tools to make one.
async fn own_cluster(test: &str) -> Option<ClusterGuard> {
    match ClusterGuard::acquire(CLUSTER, CLUSTER_PORT).await {
        Ok(cluster) => Some(cluster),
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED {test}: it needs a PostgreSQL cluster of its own: {why} ***\n"
            );
            None
        }
    }
}

/// Every daemon's log, headed by its name, for failure messages.
fn logs(daemons: &[(&str, &Daemon)]) -> String {
    daemons
        .iter()
        .map(|(name, d)| format!("--- {name} log ---\n{}", d.log()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `query` (a `SELECT count(*)`) returns `want`; fails with
/// `log()` otherwise.
async fn wait_for_count(
    client: &Client,
    query: &str,
    want: i64,
    timeout: Duration,
    log: impl Fn() -> String,
) {
    let reached = wait_until(timeout, || async { count(client, query).await == want }).await;
    assert!(
        reached,
        "waited {timeout:?} for `{query}` to be {want}, it is {}\n{}",
        count(client, query).await,
        log()
    );
}

/// How often each `webhook-id` arrived.
fn arrivals(requests: &[Received]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in requests {
        *seen.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    seen
}

/// The ids that arrived more than once.
fn duplicated(seen: &HashMap<String, usize>) -> HashSet<String> {
    seen.iter()
        .filter(|(_, &n)| n > 1)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Checks that every delivery is delivered and logged once, and every event
/// arrived at least once; returns (requests, duplicates).
async fn assert_all_delivered(
    client: &Client,
    receiver: &Receiver,
    events: usize,
    log: impl Fn() -> String,
) -> (usize, usize) {
    assert_eq!(
        count(client, "SELECT count(*) FROM outbox.deliveries").await,
        events as i64,
        "one delivery per event\n{}",
        log()
    );
    assert_eq!(
        count(client, DELIVERED).await,
        events as i64,
        "every delivery delivered"
    );
    // A result is written once: a retry after a commit whose answer was
    // lost, or a late one from a cut-off lease, is fenced off.
    assert_eq!(
        count(
            client,
            "SELECT count(*) FROM outbox.delivery_attempts WHERE outcome = 'delivered'"
        )
        .await,
        events as i64,
        "one delivered attempt logged per delivery"
    );
    let requests = receiver.requests();
    let seen = arrivals(&requests);
    assert_eq!(seen.len(), events, "every event arrived at least once");
    (requests.len(), requests.len() - events)
}

async fn is_ready(daemon: &Daemon) -> bool {
    matches!(daemon.get("/readyz").await, Some((200, _)))
}

#[tokio::test]
async fn two_daemons_deliver_5000_events_through_a_postgres_restart() {
    const EVENTS: usize = 5000;
    const CONCURRENCY: usize = 16;
    const DAEMONS: usize = 2;
    let Some(cluster) =
        own_cluster("two_daemons_deliver_5000_events_through_a_postgres_restart").await
    else {
        return;
    };
    let db = TestDb::on(&cluster.url()).await;
    let client = db.client().await;
    // A little latency per request, so that the run lasts long enough to be
    // cut in the middle and requests are in flight when the server goes.
    let receiver = Receiver::start(|_| Reply::ok().after(Duration::from_millis(10))).await;
    add_webhook(&client, "restart", &receiver.url("/restart"), &["*"]).await;
    let concurrency = CONCURRENCY.to_string();
    // The lease outlasts the outage (stopping and starting a cluster takes
    // a few seconds here): results written late still count, and a restart
    // should then send nothing twice. The bound below is for slower
    // machines, where the outage may outlast it.
    let env = [
        ("OUTBOXD_CONCURRENCY", concurrency.as_str()),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", concurrency.as_str()),
        ("OUTBOXD_LEASE", "10s"),
    ];
    let mut a = Daemon::start(BIN, &db.url, &env);
    let mut b = Daemon::start(BIN, &db.url, &env);
    let all_logs = || logs(&[("first daemon", &a), ("second daemon", &b)]);
    for d in [&a, &b] {
        assert!(
            wait_until(Duration::from_secs(30), || is_ready(d)).await,
            "daemon not ready\n{}",
            d.log()
        );
    }
    let started = Instant::now();
    publish_many(&client, "order.created", EVENTS as i64).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            receiver.count() >= EVENTS / 5
        })
        .await,
        "nothing delivered before the restart\n{}",
        all_logs()
    );

    // The restart: fast shutdown (connections cut, transactions rolled
    // back), a visible outage, then the server back.
    let at_stop = receiver.count();
    let stopping = Instant::now();
    cluster.stop().await;
    let stop_took = stopping.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start().await;
    let outage = stopping.elapsed();
    let stopped_for = outage - stop_took;
    let back = Instant::now();
    assert!(
        at_stop < EVENTS,
        "the restart came too late to cut anything off ({at_stop} received)"
    );

    // The test's own connection died with the server.
    let client = db.client().await;
    wait_for_count(
        &client,
        DELIVERED,
        EVENTS as i64,
        Duration::from_secs(60),
        all_logs,
    )
    .await;
    let (requests, duplicates) = assert_all_delivered(&client, &receiver, EVENTS, all_logs).await;
    let took = started.elapsed();

    for (name, d) in [("first", &mut a), ("second", &mut b)] {
        assert!(
            d.is_running(),
            "the {name} daemon exited after the restart\n{}",
            d.log()
        );
        assert!(
            wait_until(Duration::from_secs(10), || is_ready(d)).await,
            "the {name} daemon is not ready again\n{}",
            d.log()
        );
    }
    // Only what was in flight (or whose result was not written yet) when the
    // server went away may be sent twice: each duplicated event first
    // arrived before the server was back, and there are no more of them
    // than the daemons could have had in flight.
    let log = receiver.requests();
    let dup_ids = duplicated(&arrivals(&log));
    for id in &dup_ids {
        let first = log.iter().find(|r| r.header("webhook-id") == id).unwrap();
        assert!(
            first.at < back,
            "{id} was sent twice though it was first sent after the restart"
        );
    }
    let bound = CONCURRENCY * DAEMONS;
    eprintln!(
        "postgres restart: {at_stop} of {EVENTS} received at the stop, outage {outage:.1?} \
         (stopping {stop_took:.1?}, down and starting {stopped_for:.1?}), \
         {requests} requests, {duplicates} duplicates ({} events) (bound {bound}), \
         all delivered {took:.1?} after publishing",
        dup_ids.len()
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than the {bound} the daemons could have had in flight"
    );
}

#[tokio::test]
async fn five_sigkills_during_10000_events_lose_nothing() {
    const EVENTS: usize = 10_000;
    const KILLS: usize = 5;
    const CONCURRENCY: usize = 32;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::ok().after(Duration::from_millis(5))).await;
    add_webhook(&client, "killed", &receiver.url("/killed"), &["*"]).await;
    publish_many(&client, "order.created", EVENTS as i64).await;

    let concurrency = CONCURRENCY.to_string();
    let env = [
        ("OUTBOXD_CONCURRENCY", concurrency.as_str()),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", concurrency.as_str()),
        // Short leases: what a kill leaves in flight comes back soon.
        ("OUTBOXD_LEASE", "3s"),
        ("OUTBOXD_REQUEST_TIMEOUT", "2s"),
    ];
    let started = Instant::now();
    let mut daemon = Daemon::start(BIN, &db.url, &env);
    // Deliveries leased when a daemon died: only these may arrive twice.
    let mut cut_off: HashSet<String> = HashSet::new();
    let mut at_kills = Vec::new();
    let step = EVENTS / (KILLS + 2);
    for kill in 1..=KILLS {
        let want = receiver.count() + step / 2;
        assert!(
            wait_until(Duration::from_secs(30), || async {
                receiver.count() >= want
            })
            .await,
            "nothing delivered before kill {kill}\n{}",
            daemon.log()
        );
        daemon.kill9().await;
        let at_kill = receiver.count();
        at_kills.push(at_kill);
        assert!(
            at_kill < EVENTS,
            "kill {kill} came after everything arrived ({at_kill} received)"
        );
        let leased = client
            .query(
                "SELECT 'evt_' || event_id FROM outbox.deliveries WHERE state = 'in_flight'",
                &[],
            )
            .await
            .unwrap();
        cut_off.extend(leased.iter().map(|r| r.get::<_, String>(0)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        daemon = Daemon::start(BIN, &db.url, &env);
    }

    wait_for_count(
        &client,
        DELIVERED,
        EVENTS as i64,
        Duration::from_secs(90),
        || daemon.log(),
    )
    .await;
    let took = started.elapsed();
    let (requests, duplicates) =
        assert_all_delivered(&client, &receiver, EVENTS, || daemon.log()).await;
    let dup_ids = duplicated(&arrivals(&receiver.requests()));
    for id in &dup_ids {
        assert!(
            cut_off.contains(id),
            "{id} arrived twice though no kill cut it off"
        );
    }
    assert!(
        duplicates <= cut_off.len(),
        "{duplicates} duplicates, {} deliveries cut off",
        cut_off.len()
    );
    assert!(
        daemon.is_running(),
        "the last daemon exited\n{}",
        daemon.log()
    );
    eprintln!(
        "{KILLS} SIGKILLs: received at each kill {at_kills:?}, {} deliveries cut off, \
         {requests} requests, {duplicates} duplicates ({} events), all delivered in {took:.1?}",
        cut_off.len(),
        dup_ids.len()
    );
}

#[tokio::test]
async fn starts_while_the_database_is_down_then_becomes_ready_and_delivers() {
    const EVENTS: i64 = 100;
    let Some(cluster) =
        own_cluster("starts_while_the_database_is_down_then_becomes_ready_and_delivers").await
    else {
        return;
    };
    let db = TestDb::on(&cluster.url()).await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    add_webhook(&client, "late", &receiver.url("/late"), &["*"]).await;
    // Events written before the outage wait for the daemon.
    publish_many(&client, "order.created", EVENTS / 2).await;
    drop(client);

    cluster.stop().await;
    let mut daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            daemon.get("/healthz").await.is_some()
        })
        .await,
        "the listener comes up without a database\n{}",
        daemon.log()
    );
    let address = format!("127.0.0.1:{}", cluster.port);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            daemon
                .plain_log()
                .lines()
                .any(|l| l.contains("database unreachable") && l.contains(&address))
        })
        .await,
        "a log line names the database at {address}\n{}",
        daemon.log()
    );
    let line = daemon
        .plain_log()
        .lines()
        .find(|l| l.contains("database unreachable") && l.contains(&address))
        .unwrap()
        .to_owned();
    assert!(line.contains("retry_in"), "it says it retries: {line}");
    // Down for a while: no crash loop, not ready, alive.
    assert!(
        daemon.wait(Duration::from_secs(2)).await.is_none(),
        "the daemon exited while the database was down\n{}",
        daemon.log()
    );
    let (status, body) = daemon.get("/readyz").await.expect("/readyz answers");
    assert_ne!(status, 200, "/readyz while the database is down: {body}");
    assert_eq!(daemon.get("/healthz").await.map(|(s, _)| s), Some(200));

    let starting = Instant::now();
    cluster.start().await;
    assert!(
        wait_until(Duration::from_secs(30), || is_ready(&daemon)).await,
        "not ready after the database came up: {:?}\n{}",
        daemon.get("/readyz").await,
        daemon.log()
    );
    let ready_after = starting.elapsed();
    let client = db.client().await;
    publish_many(&client, "order.created", EVENTS / 2).await;
    wait_for_count(&client, DELIVERED, EVENTS, Duration::from_secs(30), || {
        daemon.log()
    })
    .await;
    let (requests, duplicates) =
        assert_all_delivered(&client, &receiver, EVENTS as usize, || daemon.log()).await;
    assert_eq!(duplicates, 0, "nothing was in flight: no duplicates");
    assert!(daemon.is_running(), "{}", daemon.log());
    eprintln!(
        "database down at start: {line:?}; ready {ready_after:.1?} after the server started, \
         {requests} requests, {duplicates} duplicates"
    );
}

/// A fake server that answers every connection as PostgreSQL does while it
/// starts up or shuts down: SQLSTATE 57P03, "the database system is
/// starting up". Returns its port.
async fn starting_up_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // SSLRequest (answered 'N') or the StartupMessage.
                loop {
                    let Ok(len) = stream.read_i32().await else {
                        return;
                    };
                    let mut rest = vec![0; (len as usize).saturating_sub(4)];
                    if stream.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    if rest.starts_with(&80877103i32.to_be_bytes()) {
                        let _ = stream.write_all(b"N").await;
                        continue;
                    }
                    break;
                }
                let mut fields = Vec::new();
                for (code, value) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "57P03"),
                    (b'M', "the database system is starting up"),
                ] {
                    fields.push(code);
                    fields.extend_from_slice(value.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut message = vec![b'E'];
                message.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
                message.extend_from_slice(&fields);
                let _ = stream.write_all(&message).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn keeps_waiting_while_postgres_answers_that_it_is_starting_up() {
    let port = starting_up_server().await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/app");
    let mut daemon = Daemon::start(BIN, &url, &[]);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            daemon.get("/healthz").await.is_some()
        })
        .await,
        "the listener comes up\n{}",
        daemon.log()
    );
    // Several retries' worth: a starting server is a reason to wait, not
    // to exit (which, under a supervisor, becomes a crash loop).
    assert!(
        daemon.wait(Duration::from_secs(3)).await.is_none(),
        "the daemon exited while the database was starting up\n{}",
        daemon.log()
    );
    let (status, body) = daemon.get("/readyz").await.expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    let log = daemon.plain_log();
    assert!(
        log.lines().any(|l| l.contains("database unreachable")
            && l.contains(&format!("127.0.0.1:{port}"))
            && l.contains("starting up")),
        "a log line says the database at 127.0.0.1:{port} is starting up\n{log}"
    );
}

#[tokio::test]
async fn pool_of_two_serves_concurrency_64_while_a_table_is_locked() {
    const EVENTS: usize = 2000;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::start(|_| Reply::ok().after(Duration::from_millis(20))).await;
    add_webhook(&client, "busy", &receiver.url("/busy"), &["*"]).await;
    publish_many(&client, "order.created", EVENTS as i64).await;
    // A lease far longer than the test: nothing may be sent twice.
    let env = [
        ("OUTBOXD_DB_POOL_SIZE", "2"),
        ("OUTBOXD_CONCURRENCY", "64"),
        ("OUTBOXD_WEBHOOK_CONCURRENCY", "64"),
        ("OUTBOXD_LEASE", "60s"),
    ];
    let started = Instant::now();
    let mut daemon = Daemon::start(BIN, &db.url, &env);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            receiver.count() >= EVENTS / 5
        })
        .await,
        "nothing delivered\n{}",
        daemon.log()
    );
    // Slow queries: the result writer's inserts into the delivery log wait
    // on this lock, holding a connection of the two, for three seconds.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE outbox.delivery_attempts IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let at_lock = receiver.count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_lock = receiver.count() - at_lock;
    locker.batch_execute("COMMIT").await.unwrap();
    assert!(
        at_lock < EVENTS,
        "the lock came after everything arrived ({at_lock} received)"
    );

    wait_for_count(
        &client,
        DELIVERED,
        EVENTS as i64,
        Duration::from_secs(60),
        || daemon.log(),
    )
    .await;
    let took = started.elapsed();
    let (requests, duplicates) =
        assert_all_delivered(&client, &receiver, EVENTS, || daemon.log()).await;
    assert_eq!(
        duplicates,
        0,
        "no lease could expire: nothing sent twice\n{}",
        daemon.log()
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        EVENTS as i64,
        "one attempt logged per delivery"
    );
    assert!(daemon.is_running(), "{}", daemon.log());
    eprintln!(
        "pool of 2, concurrency 64: {requests} requests, {duplicates} duplicates, \
         {during_lock} received during the 3 s lock, all delivered in {took:.1?}"
    );
}
