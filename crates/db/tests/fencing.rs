//! Leases and fencing tokens against a real database: a result is written
//! only under the lease it was claimed with, an expired lease is reaped and
//! re-claimed under a new token, a handed-back lease costs no attempt, a
//! claim takes at most the room it was given for each webhook, and fan-out
//! claims what the deliverer has room for as it inserts it, and a result the
//! server refuses for its values fails only itself.

use std::time::Duration;

use chrono::Utc;
use outboxd_core::outcome::Outcome;
use outboxd_core::DeliveryState;
use outboxd_db::claim::Wants;
use outboxd_db::{
    claim, connect_pool, results, AttemptRecord, Claimed, Dispatcher, Handoff, Pool, Reaper, Room,
    WebhookCache,
};
use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::TestDb;
use tokio_postgres::Client;

const LEASE: Duration = Duration::from_secs(60);

/// One round of the reaper; how many expired leases it put back.
async fn reap(pool: &Pool) -> u64 {
    let reaper = Reaper {
        pool: pool.clone(),
        interval: outboxd_db::reaper::INTERVAL,
        deliveries_ready: Default::default(),
    };
    reaper.run_once().await.unwrap().expired
}

/// A webhook with `n` due deliveries, made by hand (no fan-out needed).
async fn webhook_with_deliveries(client: &Client, name: &str, n: i64) -> i64 {
    let (webhook, _) = add_webhook(client, name, "http://127.0.0.1:9/hook", &["*"]).await;
    client
        .execute(
            "WITH e AS (
                 INSERT INTO outbox.events (event_type, payload, dispatched_at)
                 SELECT 'order.created', jsonb_build_object('n', i), now()
                   FROM generate_series(1, $2::int8) AS i
                 RETURNING id)
             INSERT INTO outbox.deliveries (event_id, webhook_id) SELECT id, $1 FROM e",
            &[&webhook, &n],
        )
        .await
        .expect("inserting deliveries");
    webhook
}

async fn setup() -> (TestDb, Client, Pool) {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).expect("a pool");
    (db, client, pool)
}

fn delivered(c: &Claimed) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        lease: c.lease,
        event_id: c.event_id,
        webhook_id: c.webhook_id,
        attempt: c.attempt,
        started_at: Utc::now(),
        duration_ms: 12.5,
        url: Some("http://127.0.0.1:9/hook".into()),
        status_code: Some(200),
        error: None,
        response_body: Some("ok".into()),
        outcome: Outcome::Delivered,
        retry_in_ms: None,
        gone: false,
        cancelled: false,
        ordering_key: None,
    }
}

/// (state, attempts, lease, locked_until is set) of one delivery.
async fn delivery(client: &Client, id: i64) -> (DeliveryState, i32, i64, bool) {
    let row = client
        .query_one(
            "SELECT state, attempts, lease, locked_until IS NOT NULL FROM outbox.deliveries WHERE id = $1",
            &[&id],
        )
        .await
        .expect("reading a delivery");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test]
async fn a_late_result_from_an_expired_lease_changes_nothing() {
    let (_db, client, pool) = setup().await;
    let hook = webhook_with_deliveries(&client, "hook", 1).await;

    let first = claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    let l1 = first[0].clone();
    assert_eq!(l1.attempt, 1);
    assert_eq!(
        delivery(&client, l1.delivery_id).await,
        (DeliveryState::InFlight, 1, l1.lease, true)
    );
    // Claimed: nobody else gets it while the lease holds.
    assert!(claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(reap(&pool).await, 0, "lease still valid");

    // The worker hangs; its lease runs out and the reaper puts it back.
    client
        .execute(
            "UPDATE outbox.deliveries SET locked_until = now() - interval '1s' WHERE id = $1",
            &[&l1.delivery_id],
        )
        .await
        .unwrap();
    assert_eq!(reap(&pool).await, 1);
    assert_eq!(
        delivery(&client, l1.delivery_id).await,
        (DeliveryState::Pending, 1, l1.lease, false),
        "the reaped attempt stays counted: it may have reached the receiver"
    );

    let second = claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    let l2 = second[0].clone();
    assert_eq!(l2.delivery_id, l1.delivery_id);
    assert_eq!(l2.attempt, 2);
    assert_ne!(l2.lease, l1.lease, "a new claim, a new fencing token");

    // The hung worker wakes up and reports: fenced off.
    let late = results::record(&pool, &[delivered(&l1)]).await.unwrap();
    assert!(late.accepted.is_empty(), "{late:?}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        0,
        "a fenced result is not logged"
    );
    assert_eq!(
        delivery(&client, l1.delivery_id).await,
        (DeliveryState::InFlight, 2, l2.lease, true)
    );

    // The current holder's result is written.
    let current = results::record(&pool, &[delivered(&l2)]).await.unwrap();
    assert_eq!(current.accepted, [l2.delivery_id]);
    assert_eq!(
        delivery(&client, l2.delivery_id).await,
        (DeliveryState::Delivered, 2, l2.lease, false)
    );
    let row = client
        .query_one(
            "SELECT attempt, status_code, outcome FROM outbox.delivery_attempts",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, Option<i32>>(1), Some(200));
    assert_eq!(row.get::<_, String>(2), Outcome::Delivered.as_str());

    // A result repeated under the right token is not written twice.
    let again = results::record(&pool, &[delivered(&l2)]).await.unwrap();
    assert!(again.accepted.is_empty());
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        1
    );
}

#[tokio::test]
async fn hand_back_returns_the_delivery_to_pending_without_spending_an_attempt() {
    let (_db, client, pool) = setup().await;
    let hook = webhook_with_deliveries(&client, "hook", 1).await;

    let claimed = claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let c = claimed[0].clone();
    assert_eq!(c.attempt, 1);

    // A stale token hands back nothing.
    assert_eq!(
        claim::hand_back(&pool, &[(c.delivery_id, c.lease - 1)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        claim::hand_back(&pool, &[(c.delivery_id, c.lease)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        delivery(&client, c.delivery_id).await,
        (DeliveryState::Pending, 0, c.lease, false)
    );
    // Handed back twice is still one hand-back.
    assert_eq!(
        claim::hand_back(&pool, &[(c.delivery_id, c.lease)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(claim::hand_back(&pool, &[]).await.unwrap(), 0);

    // Due at once, and its next claim is attempt 1 again.
    let again = claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_id, c.delivery_id);
    assert_eq!(again[0].attempt, 1);
    assert!(again[0].lease > c.lease);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_attempts").await,
        0
    );
}

#[tokio::test]
async fn a_claim_takes_each_listed_webhooks_room_oldest_first() {
    let (_db, client, pool) = setup().await;
    let busy = webhook_with_deliveries(&client, "busy", 10).await;
    let full = webhook_with_deliveries(&client, "full", 10).await;
    let other = webhook_with_deliveries(&client, "other", 10).await;

    let claimed_by = |claimed: &[Claimed], webhook: i64| {
        claimed.iter().filter(|c| c.webhook_id == webhook).count()
    };

    // Each listed webhook gets its room; an unlisted one (full) nothing.
    let first = claim::claim(&pool, &Wants::only(&[(busy, 2), (other, 3)]), 100, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed_by(&first, busy), 2);
    assert_eq!(claimed_by(&first, other), 3);
    assert_eq!(claimed_by(&first, full), 0);
    assert_eq!(first.len(), 5);
    // Oldest first within a webhook.
    let busy_ids: Vec<i64> = first
        .iter()
        .filter(|c| c.webhook_id == busy)
        .map(|c| c.delivery_id)
        .collect();
    let oldest: Vec<i64> = client
        .query(
            "SELECT id FROM outbox.deliveries WHERE webhook_id = $1 ORDER BY id LIMIT 2",
            &[&busy],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sorted = busy_ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, oldest);

    // The global limit is respected as well, in the order given.
    let second = claim::claim(&pool, &Wants::only(&[(full, 10), (other, 10)]), 4, LEASE)
        .await
        .unwrap();
    assert_eq!(second.len(), 4);
    assert_eq!(claimed_by(&second, full), 4);

    // Nothing to ask for, nothing claimed.
    assert!(claim::claim(&pool, &Wants::only(&[]), 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'in_flight'"
        )
        .await,
        9
    );
    let mut ids: Vec<i64> = first.iter().chain(&second).map(|c| c.delivery_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 9, "nothing was claimed twice");
}

#[tokio::test]
async fn fan_out_claims_what_the_deliverer_has_room_for_and_leaves_the_rest_pending() {
    let (_db, client, pool) = setup().await;
    let (roomy, _) = add_webhook(&client, "roomy", "http://127.0.0.1:9/a", &["*"]).await;
    let (full, _) = add_webhook(&client, "full", "http://127.0.0.1:9/b", &["*"]).await;
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT 'order.created', jsonb_build_object('n', i) FROM generate_series(1, 5) AS i",
            &[],
        )
        .await
        .unwrap();
    let cache = WebhookCache::new();
    cache.reload(&pool).await.unwrap();
    let room = Room::new(outboxd_core::Windows::new(8, 1));
    room.publish(std::collections::HashMap::from([(roomy, 3), (full, 0)]));
    let (to_deliverer, mut handed) = tokio::sync::mpsc::unbounded_channel();
    let dispatcher = Dispatcher {
        pool: pool.clone(),
        cache,
        batch_size: 100,
        poll_interval: Duration::from_secs(1),
        wake: Default::default(),
        deliveries_ready: Default::default(),
        handoff: Some(Handoff {
            room: room.clone(),
            to_deliverer,
            lease: LEASE,
        }),
    };

    let round = dispatcher.dispatch_once().await.unwrap();
    assert_eq!((round.events, round.deliveries, round.handed), (5, 10, 3));
    let h = handed.try_recv().expect("a hand-over");
    assert_eq!(h.taken.get(&roomy), Some(&3));
    assert_eq!(
        h.taken.get(&full).copied().unwrap_or(0),
        0,
        "no room, nothing taken"
    );
    assert_eq!(h.claimed.len(), 3);
    // The three oldest events' deliveries to the webhook with room, claimed
    // as a claim would: attempt 1 under lease 1, with the event's payload.
    for c in &h.claimed {
        assert_eq!(c.webhook_id, roomy);
        assert_eq!((c.attempt, c.lease), (1, 1));
        assert!(c.payload.contains("\"n\""), "{}", c.payload);
        assert_eq!(
            delivery(&client, c.delivery_id).await,
            (DeliveryState::InFlight, 1, 1, true)
        );
    }
    let oldest: Vec<i64> = client
        .query("SELECT id FROM outbox.events ORDER BY id LIMIT 3", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut handed_events: Vec<i64> = h.claimed.iter().map(|c| c.event_id).collect();
    handed_events.sort_unstable();
    assert_eq!(handed_events, oldest);
    // The rest wait for a claim, which takes them as usual.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.deliveries WHERE state = 'pending'"
        )
        .await,
        7
    );
    let rest = claim::claim(&pool, &Wants::only(&[(roomy, 10), (full, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(rest.len(), 7);
    // The room stays taken until the deliverer says it arrived.
    assert_eq!(room.in_transit()[&roomy], 3);
}

#[tokio::test]
async fn a_result_the_database_refuses_is_written_without_the_refused_text_beside_the_rest() {
    let (_db, client, pool) = setup().await;
    let hook = webhook_with_deliveries(&client, "hook", 5).await;
    let claimed = claim::claim(&pool, &Wants::only(&[(hook, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    let mut batch: Vec<AttemptRecord> = claimed.iter().map(delivered).collect();
    // PostgreSQL text cannot hold NUL: as one statement, this row fails all five.
    batch[1].response_body = Some("ok\0binary".into());
    batch[3].error = Some("reason\0with nul".into());
    batch[3].outcome = Outcome::Retry;
    batch[3].retry_in_ms = Some(1000.0);

    let recorded = results::record(&pool, &batch).await.unwrap();
    let mut accepted = recorded.accepted.clone();
    accepted.sort_unstable();
    let mut all: Vec<i64> = claimed.iter().map(|c| c.delivery_id).collect();
    all.sort_unstable();
    assert_eq!(accepted, all, "every result was written");

    let logged = client
        .query(
            "SELECT d.id, d.state, a.response_body, a.error, d.last_error
               FROM outbox.deliveries d JOIN outbox.delivery_attempts a ON a.delivery_id = d.id
              ORDER BY d.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(logged.len(), 5, "each attempt logged once");
    let note = Some("[not stored: the database refused it (SQLSTATE 22021)]");
    for (i, row) in logged.iter().enumerate() {
        let got: (DeliveryState, Option<&str>, Option<&str>, Option<&str>) =
            (row.get(1), row.get(2), row.get(3), row.get(4));
        let want = match i {
            1 => (DeliveryState::Delivered, note, None, None),
            // Which field was refused is not known: both are replaced.
            3 => (DeliveryState::Pending, note, note, note),
            _ => (DeliveryState::Delivered, Some("ok"), None, None),
        };
        assert_eq!(got, want, "delivery {i}");
    }
}
