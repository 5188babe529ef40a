//! A paused webhook's events are deferred at fan-out (V29): one row per
//! round instead of a delivery per event. They become deliveries exactly
//! once when the webhook recovers, one row at a time to probe it with
//! when its pause ends with nothing waiting, cancelled ones when it is
//! disabled or deleted; retention keeps their events meanwhile, and a
//! recovery committing while a round defers is never left with rows no one
//! expands.

use std::sync::Arc;
use std::time::Duration;

use outboxd_db::{
    connect_pool, deferred, health, DeferredSweeper, Dispatcher, Janitor, Pool, WebhookCache,
};
use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::TestDb;
use tokio::sync::Notify;
use tokio_postgres::Client;

struct Setup {
    db: TestDb,
    client: Client,
    pool: Pool,
    dispatcher: Dispatcher,
    paused: i64,
    healthy: i64,
}

/// Two webhooks on `a.*`; the first paused for an hour.
async fn setup() -> Setup {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).expect("a pool");
    let (paused, _) = add_webhook(&client, "paused", "http://127.0.0.1:9/p", &["a.*"]).await;
    let (healthy, _) = add_webhook(&client, "healthy", "http://127.0.0.1:9/h", &["a.*"]).await;
    client
        .execute(
            "INSERT INTO outbox.webhook_health (webhook_id, failing_since, paused_until, last_error)
             VALUES ($1, now(), now() + interval '1 hour', 'connection refused')",
            &[&paused],
        )
        .await
        .unwrap();
    let cache = WebhookCache::new();
    cache.reload(&pool).await.unwrap();
    let dispatcher = Dispatcher {
        pool: pool.clone(),
        cache,
        batch_size: 1000,
        poll_interval: Duration::from_secs(1),
        wake: Default::default(),
        deliveries_ready: Default::default(),
        handoff: None,
    };
    Setup {
        db,
        client,
        pool,
        dispatcher,
        paused,
        healthy,
    }
}

async fn publish(client: &Client, event_type: &str, n: i64) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT $1, '{}' FROM generate_series(1, $2::int8)",
            &[&event_type, &n],
        )
        .await
        .unwrap();
}

async fn deliveries_of(client: &Client, webhook: i64) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = $1",
            &[&webhook],
        )
        .await
        .unwrap()
        .get(0)
}

async fn deferred_events(client: &Client) -> i64 {
    count(
        client,
        "SELECT coalesce(sum(cardinality(event_ids)), 0)::int8 FROM outbox.deferred_deliveries",
    )
    .await
}

#[tokio::test]
async fn a_paused_webhooks_events_wait_as_one_row_per_round_and_are_delivered_once_after_recovery()
{
    let s = setup().await;
    publish(&s.client, "a.one", 30).await;
    let round = s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(round.events, 30);
    assert_eq!(round.deliveries, 30, "only the healthy webhook's are rows");
    publish(&s.client, "a.two", 20).await;
    s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(deliveries_of(&s.client, s.healthy).await, 50);
    assert_eq!(deliveries_of(&s.client, s.paused).await, 0);
    assert_eq!(
        count(&s.client, "SELECT count(*) FROM outbox.deferred_deliveries").await,
        2,
        "one row per round"
    );
    assert_eq!(deferred_events(&s.client).await, 50);

    // The recovery expands them, each event once.
    assert!(health::healthy(&s.pool, s.paused).await.unwrap().is_some());
    let ready = Notify::new();
    assert_eq!(
        deferred::expand(&s.pool, s.paused, &ready).await.unwrap(),
        2
    );
    assert_eq!(
        deferred::expand(&s.pool, s.paused, &ready).await.unwrap(),
        0
    );
    assert_eq!(deferred_events(&s.client).await, 0);
    assert_eq!(
        count(
            &s.client,
            &format!(
                "SELECT count(DISTINCT event_id) FROM outbox.deliveries
                  WHERE webhook_id = {} AND state = 'pending' AND attempts = 0
                    AND next_attempt_at <= now()",
                s.paused
            )
        )
        .await,
        50,
        "every deferred event is a delivery due now"
    );

    // Healthy again: a round writes deliveries.
    publish(&s.client, "a.three", 5).await;
    s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(deliveries_of(&s.client, s.paused).await, 55);
    assert_eq!(deferred_events(&s.client).await, 0);
}

#[tokio::test]
async fn the_sweep_probes_with_one_row_when_the_pause_ends_and_expands_the_rest_on_recovery() {
    let s = setup().await;
    let ready = Arc::new(Notify::new());
    let sweeper = DeferredSweeper {
        pool: s.pool.clone(),
        interval: Duration::from_secs(1),
        ready: ready.clone(),
    };
    for _ in 0..3 {
        publish(&s.client, "a.x", 10).await;
        s.dispatcher.dispatch_once().await.unwrap();
    }
    assert_eq!(sweeper.sweep().await.unwrap(), 0, "paused: nothing to do");

    // The pause is over and nothing waits to probe with: one row.
    s.client
        .execute(
            "UPDATE outbox.webhook_health SET paused_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sweeper.sweep().await.unwrap(), 1);
    assert_eq!(deliveries_of(&s.client, s.paused).await, 10);
    assert_eq!(
        sweeper.sweep().await.unwrap(),
        0,
        "the probe is waiting: no more"
    );

    // A recovery no replica expanded after (its daemon stopped, or the
    // expansion failed): the sweep does.
    s.client
        .execute(
            "UPDATE outbox.webhook_health SET paused_until = NULL, failing_since = NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sweeper.sweep().await.unwrap(), 2);
    assert_eq!(deliveries_of(&s.client, s.paused).await, 30);
    assert_eq!(deferred_events(&s.client).await, 0);
    let distinct = count(
        &s.client,
        &format!(
            "SELECT count(DISTINCT event_id) FROM outbox.deliveries WHERE webhook_id = {}",
            s.paused
        ),
    )
    .await;
    assert_eq!(distinct, 30);
}

#[tokio::test]
async fn disabling_or_deleting_the_webhook_makes_its_deferred_events_cancelled_deliveries() {
    let s = setup().await;
    let (other, _) = add_webhook(&s.client, "other", "http://127.0.0.1:9/o", &["a.*"]).await;
    s.client
        .execute(
            "INSERT INTO outbox.webhook_health (webhook_id, failing_since, paused_until)
             VALUES ($1, now(), now() + interval '1 hour')",
            &[&other],
        )
        .await
        .unwrap();
    s.dispatcher.cache.reload(&s.pool).await.unwrap();
    publish(&s.client, "a.x", 12).await;
    s.dispatcher.dispatch_once().await.unwrap();
    assert_eq!(deferred_events(&s.client).await, 24);

    s.client
        .execute(
            "UPDATE outbox.webhooks SET enabled = false WHERE id = $1",
            &[&s.paused],
        )
        .await
        .unwrap();
    s.client
        .execute("DELETE FROM outbox.webhooks WHERE id = $1", &[&other])
        .await
        .unwrap();
    assert_eq!(deferred_events(&s.client).await, 0);
    for (webhook, reason) in [(s.paused, "webhook disabled"), (other, "webhook deleted")] {
        let n: i64 = s
            .client
            .query_one(
                "SELECT count(*) FROM outbox.deliveries
                  WHERE webhook_id = $1 AND state = 'cancelled' AND last_error = $2",
                &[&webhook, &reason],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 12, "{reason}");
    }
}

#[tokio::test]
async fn retention_keeps_the_events_a_deferred_row_names() {
    let s = setup().await;
    publish(&s.client, "a.kept", 3).await;
    publish(&s.client, "nobody.gets", 3).await;
    s.dispatcher.dispatch_once().await.unwrap();
    // The healthy webhook's deliveries finished long ago; all events old.
    s.client
        .batch_execute(
            "UPDATE outbox.deliveries SET state = 'delivered', delivered_at = now() - interval '2 days',
                                          updated_at = now() - interval '2 days';
             UPDATE outbox.events SET created_at = now() - interval '2 days';",
        )
        .await
        .unwrap();
    let janitor = Janitor {
        pool: s.pool.clone(),
        retention: Duration::from_secs(3600),
        interval: Duration::from_secs(3600),
    };
    janitor.run_once().await.unwrap();
    let left = count(
        &s.client,
        "SELECT count(*) FROM outbox.events WHERE event_type = 'a.kept'",
    )
    .await;
    assert_eq!(left, 3, "a deferred event outlives the retention");
    assert_eq!(
        count(
            &s.client,
            "SELECT count(*) FROM outbox.events WHERE event_type = 'nobody.gets'"
        )
        .await,
        0,
        "the sweep ran"
    );
    assert_eq!(deferred_events(&s.client).await, 3);
}

#[tokio::test]
async fn a_recovery_committing_while_a_round_defers_leaves_nothing_behind() {
    let s = setup().await;
    let mut recovering = s.db.client().await;
    let tx = recovering.transaction().await.unwrap();
    tx.execute(
        "UPDATE outbox.webhook_health SET paused_until = NULL, failing_since = NULL
          WHERE webhook_id = $1",
        &[&s.paused],
    )
    .await
    .unwrap();
    publish(&s.client, "a.x", 7).await;
    let dispatcher = Arc::new(s.dispatcher);
    let round = tokio::spawn({
        let d = dispatcher.clone();
        async move { d.dispatch_once().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !round.is_finished(),
        "the round waits for the recovery's row lock"
    );
    tx.commit().await.unwrap();
    round.await.unwrap().unwrap();
    assert_eq!(deferred_events(&s.client).await, 0);
    assert_eq!(deliveries_of(&s.client, s.paused).await, 7);
}
