//! Ordered delivery against a real database: the fan-out hands over a
//! key's first delivery and holds the rest, a result promotes the next,
//! and the races between a fan-out (or a replay) and the writer finishing
//! the key's head end with the next delivery pending, never stuck held.
//! The races are provoked with a second connection holding the locks the
//! statements wait for.

use std::time::Duration;

use chrono::Utc;
use outboxd_core::outcome::Outcome;
use outboxd_core::DeliveryState;
use outboxd_db::{
    claim, connect_pool, results, AttemptRecord, Claimed, Dispatcher, Handed, Handoff, Pool,
    Reaper, Room, WebhookCache,
};
use outboxd_testkit::db::add_webhook;
use outboxd_testkit::TestDb;
use tokio::sync::mpsc;
use tokio_postgres::Client;

const LEASE: Duration = Duration::from_secs(60);

struct Setup {
    _db: TestDb,
    client: Client,
    pool: Pool,
    dispatcher: Dispatcher,
    handed: mpsc::UnboundedReceiver<Handed>,
    webhook: i64,
    /// A second session, for the locks a race needs.
    other: Client,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let client = db.client().await;
    let other = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).expect("a pool");
    let (webhook, _) = add_webhook(&client, "ordered", "http://127.0.0.1:9/o", &["*"]).await;
    client
        .execute(
            "UPDATE outbox.webhooks SET ordered = true WHERE id = $1",
            &[&webhook],
        )
        .await
        .unwrap();
    let cache = WebhookCache::new();
    cache.reload(&pool).await.unwrap();
    let (to_deliverer, handed) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher {
        pool: pool.clone(),
        cache,
        batch_size: 100,
        poll_interval: Duration::from_secs(1),
        wake: Default::default(),
        deliveries_ready: Default::default(),
        handoff: Some(Handoff {
            room: Room::new(outboxd_core::Windows::new(64, 8)),
            to_deliverer,
            lease: LEASE,
        }),
    };
    Setup {
        _db: db,
        client,
        pool,
        dispatcher,
        handed,
        webhook,
        other,
    }
}

async fn publish(client: &Client, key: Option<&str>) -> i64 {
    client
        .query_one(
            "INSERT INTO outbox.events (event_type, payload, ordering_key)
             VALUES ('order.updated', '{}', $1) RETURNING id",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

async fn state_of_event(client: &Client, event: i64, webhook: i64) -> DeliveryState {
    client
        .query_one(
            "SELECT state FROM outbox.deliveries WHERE event_id = $1 AND webhook_id = $2",
            &[&event, &webhook],
        )
        .await
        .unwrap()
        .get(0)
}

fn delivered(c: &Claimed) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        lease: c.lease,
        event_id: c.event_id,
        webhook_id: c.webhook_id,
        attempt: c.attempt,
        started_at: Utc::now(),
        duration_ms: 1.0,
        url: Some("http://127.0.0.1:9/o".into()),
        status_code: Some(200),
        error: None,
        response_body: None,
        outcome: Outcome::Delivered,
        retry_in_ms: None,
        gone: false,
        cancelled: false,
        ordering_key: c.ordering_key.clone(),
    }
}

/// A head of key `k` handed over by the fan-out, in flight.
async fn head(s: &mut Setup, key: &str) -> Claimed {
    publish(&s.client, Some(key)).await;
    s.dispatcher.dispatch_once().await.unwrap();
    // Earlier hand-overs (of held deliveries: room taken, none claimed)
    // come first.
    let mut claimed = Vec::new();
    while let Ok(h) = s.handed.try_recv() {
        claimed.extend(h.claimed);
    }
    assert_eq!(claimed.len(), 1);
    claimed.remove(0)
}

/// Whether the task is still waiting after a moment (it waits for a lock).
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(400)).await;
    !task.is_finished()
}

#[tokio::test]
async fn fan_out_hands_over_a_keys_first_delivery_and_a_result_promotes_the_next() {
    let mut s = setup().await;
    let (plain, _) = add_webhook(&s.client, "plain", "http://127.0.0.1:9/p", &["*"]).await;
    s.dispatcher.cache.reload(&s.pool).await.unwrap();
    let a: Vec<i64> = [
        publish(&s.client, Some("a")).await,
        publish(&s.client, Some("a")).await,
        publish(&s.client, Some("a")).await,
    ]
    .to_vec();
    let b = publish(&s.client, Some("b")).await;
    let none = publish(&s.client, None).await;
    let round = s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!((round.events, round.deliveries), (5, 10));
    let h = s.handed.try_recv().unwrap();
    use DeliveryState::*;
    let w = s.webhook;
    for (event, want) in [
        (a[0], InFlight),
        (a[1], Held),
        (a[2], Held),
        (b, InFlight),
        (none, InFlight),
    ] {
        assert_eq!(
            state_of_event(&s.client, event, w).await,
            want,
            "event {event}"
        );
        assert_eq!(
            state_of_event(&s.client, event, plain).await,
            InFlight,
            "unordered"
        );
    }
    // No room was taken for the held ones: it all went to what was handed.
    assert_eq!(h.taken[&w], 3);
    let first = h
        .claimed
        .iter()
        .find(|c| c.event_id == a[0] && c.webhook_id == w)
        .unwrap();
    assert_eq!(first.ordering_key.as_deref(), Some("a"));
    assert!(h
        .claimed
        .iter()
        .filter(|c| c.webhook_id == plain)
        .all(|c| c.ordering_key.is_none()));

    let recorded = results::record(&s.pool, &[delivered(first)]).await.unwrap();
    assert_eq!(recorded.promoted, 1);
    assert_eq!(state_of_event(&s.client, a[0], w).await, Delivered);
    assert_eq!(state_of_event(&s.client, a[1], w).await, Pending);
    assert_eq!(state_of_event(&s.client, a[2], w).await, Held);
}

/// Two transactions writing one key: the one with the earlier transaction
/// id inserts the later event. In one batch, the lower event id is the
/// key's head whichever order the stream returns them in, and only it is
/// handed over.
#[tokio::test]
async fn in_one_batch_the_lower_event_id_of_a_key_goes_first() {
    let mut s = setup().await;
    s.client.batch_execute("BEGIN").await.unwrap();
    s.client
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap();
    let lower = publish(&s.other, Some("a")).await;
    let higher = publish(&s.client, Some("a")).await;
    s.client.batch_execute("COMMIT").await.unwrap();
    assert!(lower < higher);
    let round = s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!((round.events, round.deliveries, round.handed), (2, 2, 1));
    let h = s.handed.try_recv().unwrap();
    assert_eq!(h.claimed.len(), 1);
    assert_eq!(h.claimed[0].event_id, lower);
    let w = s.webhook;
    assert_eq!(
        state_of_event(&s.client, lower, w).await,
        DeliveryState::InFlight
    );
    assert_eq!(
        state_of_event(&s.client, higher, w).await,
        DeliveryState::Held
    );
    let recorded = results::record(&s.pool, &[delivered(&h.claimed[0])])
        .await
        .unwrap();
    assert_eq!(recorded.promoted, 1);
    assert_eq!(
        state_of_event(&s.client, higher, w).await,
        DeliveryState::Pending
    );
}

#[tokio::test]
async fn a_fan_out_waiting_for_a_finishing_head_inserts_after_it_as_pending() {
    let mut s = setup().await;
    let h = head(&mut s, "k").await;
    // The writer goes first: it holds the key's lock, as its first
    // statement takes it, and has written the result.
    s.other.batch_execute("BEGIN").await.unwrap();
    s.other
        .execute(
            "SELECT outbox.lock_keys(ARRAY[$1::int8], ARRAY['k'])",
            &[&s.webhook],
        )
        .await
        .unwrap();
    s.other
        .execute(
            "UPDATE outbox.deliveries SET state = 'delivered', locked_until = NULL WHERE id = $1",
            &[&h.delivery_id],
        )
        .await
        .unwrap();
    let promoted = s
        .other
        .query(
            "SELECT p FROM outbox.promote_held(ARRAY[$1::int8], ARRAY['k']) AS p",
            &[&s.webhook],
        )
        .await
        .unwrap();
    assert!(promoted.is_empty(), "nothing held yet");
    let next = publish(&s.client, Some("k")).await;
    let dispatcher = s.dispatcher;
    let fan_out = tokio::spawn(async move { dispatcher.dispatch_once().await });
    assert!(
        still_waiting(&fan_out).await,
        "the fan-out waits for the key's lock"
    );
    s.other.batch_execute("COMMIT").await.unwrap();
    fan_out.await.unwrap().unwrap();
    let state = state_of_event(&s.client, next, s.webhook).await;
    assert_eq!(
        state,
        DeliveryState::InFlight,
        "the key was free: handed over"
    );
}

#[tokio::test]
async fn a_head_finishing_while_a_fan_out_holds_its_key_promotes_what_the_fan_out_held() {
    let mut s = setup().await;
    let h = head(&mut s, "k").await;
    let next = publish(&s.client, Some("k")).await;
    // Make the fan-out stop between its two statements: another session's
    // uncommitted row of the same (event, webhook) holds its insert.
    s.other.batch_execute("BEGIN").await.unwrap();
    s.other
        .execute(
            "INSERT INTO outbox.deliveries (event_id, webhook_id, state) VALUES ($1, $2, 'cancelled')",
            &[&next, &s.webhook],
        )
        .await
        .unwrap();
    let dispatcher = s.dispatcher;
    let fan_out = tokio::spawn(async move { dispatcher.dispatch_once().await });
    assert!(
        still_waiting(&fan_out).await,
        "the fan-out waits on the insert"
    );
    // The writer finishing the head now waits for the fan-out's key lock.
    let pool = s.pool.clone();
    let record = delivered(&h);
    let writer = tokio::spawn(async move { results::record(&pool, &[record]).await });
    assert!(
        still_waiting(&writer).await,
        "the writer waits for the fan-out"
    );
    s.other.batch_execute("ROLLBACK").await.unwrap();
    fan_out.await.unwrap().unwrap();
    let recorded = writer.await.unwrap().unwrap();
    assert_eq!(recorded.accepted, [h.delivery_id]);
    assert_eq!(
        recorded.promoted, 1,
        "the writer's promotion saw the row the fan-out held"
    );
    assert_eq!(
        state_of_event(&s.client, next, s.webhook).await,
        DeliveryState::Pending
    );
}

#[tokio::test]
async fn a_replay_racing_the_heads_writer_is_promoted_after_it() {
    let mut s = setup().await;
    let old = head(&mut s, "k").await;
    results::record(&s.pool, &[delivered(&old)]).await.unwrap();
    let h = head(&mut s, "k").await;
    // The replay goes first and holds the key's lock until commit.
    s.other.batch_execute("BEGIN").await.unwrap();
    let n: i32 = s
        .other
        .query_one("SELECT outbox.replay($1)", &[&old.delivery_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let pool = s.pool.clone();
    let record = delivered(&h);
    let writer = tokio::spawn(async move { results::record(&pool, &[record]).await });
    assert!(
        still_waiting(&writer).await,
        "the writer waits for the replay"
    );
    s.other.batch_execute("COMMIT").await.unwrap();
    let recorded = writer.await.unwrap().unwrap();
    assert_eq!(recorded.promoted, 1);
    assert_eq!(
        state_of_event(&s.client, old.event_id, s.webhook).await,
        DeliveryState::Pending,
        "the replayed event is the key's next"
    );
}

#[tokio::test]
async fn halt_keeps_a_key_waiting_until_a_skip_or_a_change_of_policy() {
    let mut s = setup().await;
    s.client
        .execute(
            "UPDATE outbox.webhooks SET ordering_policy = 'halt' WHERE id = $1",
            &[&s.webhook],
        )
        .await
        .unwrap();
    for key in ["x", "y"] {
        let h = head(&mut s, key).await;
        let waiting = publish(&s.client, Some(key)).await;
        s.dispatcher.dispatch_once().await.unwrap();
        assert_eq!(
            state_of_event(&s.client, waiting, s.webhook).await,
            DeliveryState::Held
        );
        let failed = AttemptRecord {
            outcome: Outcome::Failed,
            status_code: Some(500),
            ..delivered(&h)
        };
        let recorded = results::record(&s.pool, &[failed]).await.unwrap();
        assert_eq!(recorded.promoted, 0, "halted");
    }
    let halted: Vec<(String, i64)> = s
        .client
        .query(
            "SELECT ordering_key, waiting FROM outbox.halted_keys ORDER BY ordering_key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(halted, [("x".into(), 1), ("y".into(), 1)]);
    let x: i64 = s
        .client
        .query_one(
            "SELECT delivery_id FROM outbox.halted_keys WHERE ordering_key = 'x'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let n: i32 = s
        .client
        .query_one("SELECT outbox.skip_halted($1)", &[&x])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let again = s
        .client
        .query_one("SELECT outbox.skip_halted($1)", &[&x])
        .await
        .unwrap_err();
    assert_eq!(again.code().map(|c| c.code()), Some("P0002"));
    // From halt to skip: every halted key goes on.
    s.client
        .execute(
            "UPDATE outbox.webhooks SET ordering_policy = 'skip' WHERE id = $1",
            &[&s.webhook],
        )
        .await
        .unwrap();
    let states: Vec<String> = s
        .client
        .query("SELECT state FROM outbox.deliveries ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(states, ["failed", "pending", "failed", "pending"]);
    // Disabling the webhook cancels what waits, held ones included.
    let h2 = publish(&s.client, Some("x")).await;
    s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(
        state_of_event(&s.client, h2, s.webhook).await,
        DeliveryState::Held
    );
    s.client
        .execute(
            "UPDATE outbox.webhooks SET enabled = false WHERE id = $1",
            &[&s.webhook],
        )
        .await
        .unwrap();
    assert_eq!(
        state_of_event(&s.client, h2, s.webhook).await,
        DeliveryState::Cancelled
    );
}

#[tokio::test]
async fn the_reaper_rescues_a_key_nothing_holds_back_and_leaves_a_halted_one() {
    let mut s = setup().await;
    let lost = head(&mut s, "lost").await;
    let stuck = publish(&s.client, Some("lost")).await;
    let halted = head(&mut s, "halted").await;
    let waiting = publish(&s.client, Some("halted")).await;
    s.dispatcher.dispatch_once().await.unwrap();
    use DeliveryState::*;
    assert_eq!(state_of_event(&s.client, stuck, s.webhook).await, Held);
    assert_eq!(state_of_event(&s.client, waiting, s.webhook).await, Held);
    // An admin deletes the head of one key by hand; the other key's head
    // fails under halt.
    s.client
        .batch_execute(&format!(
            "UPDATE outbox.webhooks SET ordering_policy = 'halt' WHERE id = {w};
             DELETE FROM outbox.deliveries WHERE id = {lost};
             UPDATE outbox.deliveries SET state = 'failed', locked_until = NULL WHERE id = {halted};
             UPDATE outbox.deliveries SET updated_at = now() - interval '1 minute'
              WHERE webhook_id = {w} AND state = 'held';",
            w = s.webhook,
            lost = lost.delivery_id,
            halted = halted.delivery_id,
        ))
        .await
        .unwrap();
    let reaper = Reaper {
        pool: s.pool.clone(),
        interval: Duration::from_secs(5),
        deliveries_ready: Default::default(),
    };
    let round = reaper.run_once().await.unwrap();
    assert_eq!(round.rescued, 1);
    assert_eq!(state_of_event(&s.client, stuck, s.webhook).await, Pending);
    assert_eq!(
        state_of_event(&s.client, waiting, s.webhook).await,
        Held,
        "a halted key waits for an admin"
    );
    assert_eq!(reaper.run_once().await.unwrap().rescued, 0);
}

/// Lease and attempt of a delivery, by its event.
async fn lease_of_event(client: &Client, event: i64, webhook: i64) -> (i64, i32) {
    let r = client
        .query_one(
            "SELECT lease, attempts FROM outbox.deliveries WHERE event_id = $1 AND webhook_id = $2",
            &[&event, &webhook],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn a_promotion_with_room_is_claimed_and_handed_over_and_survives_its_daemons_death() {
    let mut s = setup().await;
    let handoff = s.dispatcher.handoff.clone().unwrap();
    let w = s.webhook;
    let mut a = Vec::new();
    for _ in 0..5 {
        a.push(publish(&s.client, Some("a")).await);
    }
    s.dispatcher.dispatch_once().await.unwrap();
    let first = s.handed.try_recv().unwrap().claimed.remove(0);
    assert_eq!(first.event_id, a[0]);
    use DeliveryState::*;

    // Room for the webhook: the next goes in flight in the writer's
    // transaction, attempt 1 under lease 1 as a claim makes it, and comes
    // over the fan-out's channel with the room it took.
    let recorded = results::record_handing_over(&s.pool, &[delivered(&first)], Some(&handoff))
        .await
        .unwrap();
    assert_eq!((recorded.promoted, recorded.handed), (1, 1));
    let mut h = s.handed.try_recv().unwrap();
    assert_eq!(h.taken[&w], 1);
    let second = h.claimed.remove(0);
    assert!(h.claimed.is_empty());
    assert_eq!(
        (second.event_id, second.attempt, second.lease),
        (a[1], 1, 1)
    );
    assert_eq!(second.ordering_key.as_deref(), Some("a"));
    assert_eq!(&*second.payload, "{}");
    assert_eq!(state_of_event(&s.client, a[1], w).await, InFlight);
    assert_eq!(state_of_event(&s.client, a[2], w).await, Held);
    handoff.room.arrived(w, 1, 1);

    // Its daemon dies with it in flight: once the lease has expired the
    // reaper puts it back (the attempt stays spent), it is claimed again
    // under a new token, and the key's later events stay held meanwhile.
    s.client
        .execute(
            "UPDATE outbox.deliveries SET locked_until = now() - interval '1 second' WHERE id = $1",
            &[&second.delivery_id],
        )
        .await
        .unwrap();
    let reaper = Reaper {
        pool: s.pool.clone(),
        interval: Duration::from_secs(5),
        deliveries_ready: Default::default(),
    };
    assert_eq!(reaper.run_once().await.unwrap().expired, 1);
    assert_eq!(state_of_event(&s.client, a[1], w).await, Pending);
    assert_eq!(state_of_event(&s.client, a[2], w).await, Held);
    let again = claim::claim(&s.pool, &claim::Wants::only(&[(w, 10)]), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].event_id, again[0].attempt, again[0].lease),
        (a[1], 2, 2)
    );
    // The dead daemon's late answer is fenced and promotes nothing.
    let late = results::record_handing_over(&s.pool, &[delivered(&second)], Some(&handoff))
        .await
        .unwrap();
    assert!(late.accepted.is_empty());
    assert_eq!(late.promoted, 0);
    assert_eq!(state_of_event(&s.client, a[2], w).await, Held);
    while let Ok(h) = s.handed.try_recv() {
        assert!(h.claimed.is_empty(), "nothing handed for a fenced result");
        for (webhook, taken) in h.taken {
            handoff.room.arrived(webhook, taken, 0);
        }
    }
    let recorded = results::record_handing_over(&s.pool, &[delivered(&again[0])], Some(&handoff))
        .await
        .unwrap();
    assert_eq!((recorded.promoted, recorded.handed), (1, 1));
    let third = s.handed.try_recv().unwrap().claimed.remove(0);
    assert_eq!(third.event_id, a[2]);
    handoff.room.arrived(w, 1, 1);

    // Another replica's breaker paused the webhook: the next is promoted
    // pending (claims wait for the pause's end) and the room goes back.
    s.client
        .execute(
            "INSERT INTO outbox.webhook_health (webhook_id, paused_until)
             VALUES ($1, now() + interval '1 minute')",
            &[&w],
        )
        .await
        .unwrap();
    let recorded = results::record_handing_over(&s.pool, &[delivered(&third)], Some(&handoff))
        .await
        .unwrap();
    assert_eq!((recorded.promoted, recorded.handed), (1, 0));
    let h = s.handed.try_recv().unwrap();
    assert!(h.claimed.is_empty());
    assert_eq!(h.taken[&w], 1, "the room taken comes back");
    handoff.room.arrived(w, 1, 0);
    assert_eq!(state_of_event(&s.client, a[3], w).await, Pending);
    assert_eq!(lease_of_event(&s.client, a[3], w).await, (0, 0));
    s.client
        .execute("DELETE FROM outbox.webhook_health", &[])
        .await
        .unwrap();

    // No room for the webhook: pending, and nothing is sent.
    let fourth = claim::claim(&s.pool, &claim::Wants::only(&[(w, 10)]), 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(fourth.event_id, a[3]);
    handoff.room.publish([(w, 0)]);
    let recorded = results::record_handing_over(&s.pool, &[delivered(&fourth)], Some(&handoff))
        .await
        .unwrap();
    assert_eq!((recorded.promoted, recorded.handed), (1, 0));
    assert!(s.handed.try_recv().is_err());
    assert_eq!(state_of_event(&s.client, a[4], w).await, Pending);
}

#[tokio::test]
async fn a_stopped_deliverer_gets_no_promotions() {
    let mut s = setup().await;
    let handoff = s.dispatcher.handoff.clone().unwrap();
    let h = head(&mut s, "k").await;
    let next = publish(&s.client, Some("k")).await;
    s.dispatcher.dispatch_once().await.unwrap();
    s.handed.close();
    let recorded = results::record_handing_over(&s.pool, &[delivered(&h)], Some(&handoff))
        .await
        .unwrap();
    assert_eq!((recorded.promoted, recorded.handed), (1, 0));
    assert_eq!(
        state_of_event(&s.client, next, s.webhook).await,
        DeliveryState::Pending
    );
}

/// The deliveries of a webhook in one of `states`, in event order.
async fn in_states(client: &Client, webhook: i64, states: &[&str]) -> Vec<i64> {
    client
        .query(
            "SELECT id FROM outbox.deliveries WHERE webhook_id = $1 AND state = ANY ($2)
              ORDER BY event_id",
            &[&webhook, &states],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A key with a long backlog: the writer that finishes its head promotes
/// the earliest held delivery, and a result written a second time (its
/// commit was not confirmed) promotes nothing more, though the promotion no
/// longer probes the key for another head.
#[tokio::test]
async fn a_deep_keys_head_promotes_its_earliest_held_once() {
    let mut s = setup().await;
    let first = head(&mut s, "deep").await;
    s.client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, ordering_key)
             SELECT 'deep', '{}', 'deep' FROM generate_series(1, 2000)",
            &[],
        )
        .await
        .unwrap();
    while s.dispatcher.dispatch_once().await.unwrap().events > 0 {}
    let waiting = in_states(&s.client, s.webhook, &["held"]).await;
    assert_eq!(waiting.len(), 2000, "the key's backlog waits held");
    let result = delivered(&first);
    let recorded = results::record(&s.pool, std::slice::from_ref(&result))
        .await
        .unwrap();
    assert_eq!(recorded.promoted, 1);
    assert_eq!(
        in_states(&s.client, s.webhook, &["pending", "in_flight"]).await,
        vec![waiting[0]],
        "the earliest held one is the head"
    );
    // The same result again: fenced off, it promotes nothing.
    let again = results::record(&s.pool, &[result]).await.unwrap();
    assert_eq!(again.promoted, 0);
    assert_eq!(
        in_states(&s.client, s.webhook, &["held"]).await,
        waiting[1..].to_vec()
    );
}
