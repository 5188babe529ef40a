//! Fairness between tenants in the event stream: while tenant A's flood,
//! committed first, is still being fanned out, tenant B's keyed events reach
//! B's ordered webhook in order and long before A's backlog has left
//! `outbox.events` (the express lane, migrations/V26).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_testkit::db::count;
use outboxd_testkit::{wait_until, Daemon, Receiver, Reply, TestDb};

use crate::support::{ready, BIN};
use crate::tenants::TENANT_LOOPBACK;

/// Large enough that fanning it out takes seconds, even in a debug build.
const A_FLOOD: i64 = 60_000;
const B_KEYS: i32 = 3;
const B_EVENTS_PER_KEY: i32 = 8;

#[tokio::test]
async fn a_tenants_ordered_events_pass_another_tenants_flood_in_the_stream() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // B's arrivals in order: (key, seq, when).
    let b_log: Arc<Mutex<Vec<(String, i64, Instant)>>> = Arc::default();
    let receiver = {
        let b_log = b_log.clone();
        Receiver::start(move |r| {
            if r.path == "/a" {
                return Reply::ok().after(Duration::from_millis(20));
            }
            let data = &r.json()["data"];
            b_log.lock().unwrap().push((
                data["key"].as_str().unwrap_or("").to_owned(),
                data["seq"].as_i64().unwrap_or(-1),
                r.at,
            ));
            Reply::ok()
        })
        .await
    };
    client
        .execute(
            "INSERT INTO outbox.webhooks (name, url, event_types, tenant, ordered)
             VALUES ('a', $1, '{a.*}', 'a', false), ('b', $2, '{b.*}', 'b', true)",
            &[&receiver.url("/a"), &receiver.url("/b")],
        )
        .await
        .unwrap();
    let daemon = Daemon::start(BIN, &db.url, &[TENANT_LOOPBACK]);
    ready(&[&daemon]).await;

    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, tenant)
             SELECT 'a.created', jsonb_build_object('n', i), 'a'
               FROM generate_series(1, $1::int8) AS i",
            &[&A_FLOOD],
        )
        .await
        .unwrap();
    let flood_committed = Instant::now();
    // B starts once the pass over A's flood has begun: an event committed
    // before its snapshot is inside the pass and waits for its turn there
    // (the lane's documented limit), which is not what this test measures.
    let pass_began = wait_until(Duration::from_secs(10), || async {
        client
            .query_one("SELECT upto IS NOT NULL FROM outbox.dispatch_state", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    assert!(pass_began, "no pass over A's flood began\n{}", daemon.log());
    // B's events, one transaction each, keys interleaved, while the
    // fan-out works through A's.
    for seq in 0..B_EVENTS_PER_KEY {
        for k in 0..B_KEYS {
            client
                .execute(
                    "SELECT outbox.publish('b.updated', jsonb_build_object('key', $1::text, 'seq', $2::int),
                                           tenant => 'b', ordering_key => $1)",
                    &[&format!("k{k}"), &seq],
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let total = (B_KEYS * B_EVENTS_PER_KEY) as usize;
    let arrived = wait_until(Duration::from_secs(60), || async {
        b_log.lock().unwrap().len() >= total
    })
    .await;
    let b_done = flood_committed.elapsed();
    assert!(
        arrived,
        "{} of B's {total} events arrived\n{}",
        b_log.lock().unwrap().len(),
        daemon.log()
    );
    // A's flood is still in the stream when B's last event has arrived.
    let a_waiting = count(
        &client,
        "SELECT count(*) FROM outbox.undispatched_events WHERE tenant = 'a'",
    )
    .await;
    assert!(
        a_waiting > 0,
        "A's flood had left the stream when B's events had all arrived ({b_done:?}): B waited for it, or A_FLOOD is too small to show anything"
    );

    // Per key, in publication order, each once.
    let log = b_log.lock().unwrap().clone();
    let mut next: HashMap<&str, i64> = HashMap::new();
    for (key, seq, _) in &log {
        let expected = next.entry(key).or_default();
        assert_eq!(
            *seq, *expected,
            "key {key}: event {seq} came before {expected}"
        );
        *expected += 1;
    }
    assert_eq!(log.len(), total);

    // A's events are all fanned out in the end, once each.
    let fanned_out = wait_until(Duration::from_secs(120), || async {
        count(&client, "SELECT count(*) FROM outbox.undispatched_events").await == 0
    })
    .await;
    let a_done = flood_committed.elapsed();
    assert!(fanned_out, "A's flood was not fanned out in time");
    assert!(
        b_done < a_done / 2,
        "B's events took {b_done:?}, A's fan-out {a_done:?}"
    );
    for (webhook, events) in [("a", A_FLOOD), ("b", total as i64)] {
        let deliveries: i64 = client
            .query_one(
                "SELECT count(*) FROM outbox.deliveries d JOIN outbox.webhooks w ON w.id = d.webhook_id
                  WHERE w.name = $1",
                &[&webhook],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(deliveries, events, "deliveries to {webhook}'s webhook");
    }
}
