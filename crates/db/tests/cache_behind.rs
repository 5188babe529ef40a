//! The fan-out against a webhook cache that is behind a change: a bulk
//! insert of webhooks makes the listener reload the whole list, which takes
//! a good part of a second, and an event committed meanwhile must be
//! matched against the new webhooks, not the old list, whichever way the
//! fan-out was woken (here: a round run at once, as the safety-net poll
//! or a busy fan-out's poll would).
//!
//! The round reads the webhooks' version after its events (V28) and waits
//! for the listener to apply it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_db::{connect_pool, Dispatcher, Listener, WebhookCache};
use outboxd_testkit::db::count;
use outboxd_testkit::TestDb;
use tokio_util::sync::CancellationToken;

/// `n` webhooks named `prefix<i>`, each subscribed to `prefix<i>.*`, in one
/// statement (one notification that names none of them: a whole reload).
async fn add_many(client: &tokio_postgres::Client, prefix: &str, n: i64) {
    client
        .execute(
            "INSERT INTO outbox.webhooks (name, url, event_types)
             SELECT $1 || i, 'http://127.0.0.1:9/' || $1 || i, ARRAY[$1 || i || '.*']
               FROM generate_series(1, $2::int8) AS i",
            &[&prefix, &n],
        )
        .await
        .unwrap();
}

async fn wait_for_len(cache: &WebhookCache, n: usize) {
    let start = Instant::now();
    while cache.len() != n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the cache holds {} webhooks, not {n}",
            cache.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_after_a_bulk_change_wait_for_the_cache() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).expect("a pool");
    let cache = WebhookCache::new();
    let shutdown = CancellationToken::new();
    let listener = Listener {
        config: db.config.clone(),
        pool: pool.clone(),
        cache: cache.clone(),
        events: Default::default(),
        connected: Arc::new(AtomicBool::new(false)),
    };
    let listening = tokio::spawn(listener.run(shutdown.clone()));
    let dispatcher = Dispatcher {
        pool: pool.clone(),
        cache: cache.clone(),
        batch_size: 100,
        poll_interval: Duration::from_secs(1),
        wake: Default::default(),
        deliveries_ready: Default::default(),
        handoff: None,
    };
    const N: i64 = 40_000;
    add_many(&client, "old", N).await;
    wait_for_len(&cache, N as usize).await;

    // Twice as many to load: the reload is still running when the event
    // below is fanned out.
    add_many(&client, "new", N).await;
    let reload_started = Instant::now();
    let event: i64 = client
        .query_one(
            "INSERT INTO outbox.events (event_type, payload)
             VALUES ('new40000.created', '{}') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Time for the notification to reach the listener, not for the reload.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let round = dispatcher.dispatch_once().await.unwrap();
    let waited = reload_started.elapsed();
    assert_eq!(round.events, 1);
    assert_eq!(round.deliveries, 1, "the new webhook's delivery");
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM outbox.deliveries d JOIN outbox.webhooks w ON w.id = d.webhook_id
                  WHERE d.event_id = {event} AND w.name = 'new40000'"
            )
        )
        .await,
        1
    );
    assert_eq!(cache.len(), 2 * N as usize);
    // Caught up from the listener, not from the round's own reload.
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    shutdown.cancel();
    listening.await.unwrap();
}
