//! The lanes of a claim and a recovery against a real database: a claim
//! takes a webhook's due first attempts before its older retries, and
//! retries only within their room; a pause moves every waiting delivery
//! of the webhook to its end, in batches; a recovery makes the webhook's
//! later deliveries due, in batches, and leaves alone a retry that failed
//! after it.

use std::collections::HashMap;
use std::time::Duration;

use outboxd_core::lanes::Rooms;
use outboxd_db::claim::Wants;
use outboxd_db::{claim, connect_pool, health};
use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::TestDb;
use tokio::sync::Notify;
use tokio_postgres::Client;

const LEASE: Duration = Duration::from_secs(60);

/// `n` deliveries of `webhook` with `attempts` spent, due at
/// `next_attempt_at` (SQL over the event's `id`).
async fn deliveries(client: &Client, webhook: i64, n: i64, attempts: i32, next_attempt_at: &str) {
    let sql = format!(
        "WITH e AS (
             INSERT INTO outbox.events (event_type, payload, dispatched_at)
             SELECT 'order.created', jsonb_build_object('n', i), now()
               FROM generate_series(1, $2::int8) AS i
             RETURNING id)
         INSERT INTO outbox.deliveries (event_id, webhook_id, attempts, next_attempt_at)
         SELECT id, $1, $3, {next_attempt_at} FROM e"
    );
    client
        .execute(&sql, &[&webhook, &n, &attempts])
        .await
        .expect("inserting deliveries");
}

#[tokio::test]
async fn a_claim_takes_first_attempts_before_older_retries_and_retries_within_their_room() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).unwrap();
    let (hook, _) = add_webhook(&client, "hook", "http://127.0.0.1:9/hook", &["*"]).await;
    deliveries(&client, hook, 50, 3, "now() - interval '1 hour'").await;
    deliveries(&client, hook, 5, 0, "now()").await;
    let wants = Wants {
        rooms: HashMap::from([(
            hook,
            Rooms {
                fresh: 20,
                retries: 8,
            },
        )]),
        bytes: i64::MAX,
        ..Wants::default()
    };
    let claimed = claim::claim(&pool, &wants, 100, LEASE).await.unwrap();
    let mut attempts: Vec<i32> = claimed.iter().map(|c| c.attempt).collect();
    attempts.sort();
    assert_eq!(
        attempts,
        [vec![1; 5], vec![4; 8]].concat(),
        "the five fresh first, then retries up to their room"
    );
    // Both lanes together never pass the whole room.
    deliveries(&client, hook, 30, 0, "now()").await;
    let claimed = claim::claim(&pool, &wants, 100, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 20);
    assert!(claimed.iter().all(|c| c.attempt == 1));
}

/// Two webhooks: `hook` with `n` retries scheduled hours ahead (more than
/// two batches), `other` with a few an hour ahead.
struct Backlog {
    _db: TestDb,
    client: Client,
    pool: outboxd_db::Pool,
    hook: i64,
    other: i64,
    n: i64,
}

async fn backlog() -> Backlog {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).unwrap();
    let (hook, _) = add_webhook(&client, "hook", "http://127.0.0.1:9/hook", &["*"]).await;
    let (other, _) = add_webhook(&client, "other", "http://127.0.0.1:9/other", &["*"]).await;
    let n = health::MAKE_DUE_BATCH * 2 + 7;
    deliveries(
        &client,
        hook,
        n,
        5,
        "now() + (1 + id % 6) * interval '1 hour'",
    )
    .await;
    deliveries(&client, other, 4, 5, "now() + interval '1 hour'").await;
    Backlog {
        _db: db,
        client,
        pool,
        hook,
        other,
        n,
    }
}

#[tokio::test]
async fn a_recovery_makes_later_deliveries_due_in_batches_and_spares_newer_failures() {
    let Backlog {
        _db,
        client,
        pool,
        hook,
        other: _,
        n,
    } = backlog().await;
    deliveries(&client, hook, 3, 0, "now() + interval '10 minutes'").await;
    let since: chrono::DateTime<chrono::Utc> =
        client.query_one("SELECT now()", &[]).await.unwrap().get(0);
    // A retry that failed after the recovery keeps its backoff.
    deliveries(&client, hook, 1, 2, "now() + interval '20 seconds'").await;
    client
        .execute(
            "UPDATE outbox.deliveries SET updated_at = now() + interval '1 second'
              WHERE attempts = 2",
            &[],
        )
        .await
        .unwrap();

    let moved = health::make_due(&pool, hook, since, &Notify::new())
        .await
        .unwrap();
    assert_eq!(moved, n as u64 + 3);
    let due = format!(
        "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = {hook} AND next_attempt_at <= now()"
    );
    assert_eq!(count(&client, &due).await, n + 3);
    let later = "SELECT count(*) FROM outbox.deliveries WHERE next_attempt_at > now()";
    assert_eq!(
        count(&client, later).await,
        1 + 4,
        "the new failure and the other webhook's"
    );
    // Done once: nothing left to move.
    assert_eq!(
        health::make_due(&pool, hook, since, &Notify::new())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_pause_moves_every_waiting_delivery_to_its_end_in_batches() {
    let Backlog {
        _db,
        client,
        pool,
        hook,
        other,
        n,
    } = backlog().await;
    // Besides the retries hours ahead: retries and first attempts due now,
    // first attempts due within the pause.
    deliveries(&client, hook, 5, 3, "now()").await;
    deliveries(&client, hook, 3, 0, "now()").await;
    deliveries(&client, hook, 2, 0, "now() + interval '10 seconds'").await;

    let paused = health::pause(
        &pool,
        hook,
        Duration::from_secs(30),
        "connection refused",
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert!(!paused.disabled);
    let until = paused.until.expect("the pause's end");
    let moved = health::move_to_pause_end(&pool, hook, until).await.unwrap();
    assert_eq!(moved, n as u64 + 5 + 3 + 2);
    // Done once: nothing left to move.
    assert_eq!(
        health::move_to_pause_end(&pool, hook, until).await.unwrap(),
        0
    );
    let at_end = format!(
        "SELECT count(*) FROM outbox.deliveries d JOIN outbox.webhook_health h USING (webhook_id)
          WHERE d.webhook_id = {hook} AND d.next_attempt_at = h.paused_until"
    );
    assert_eq!(count(&client, &at_end).await, n + 5 + 3 + 2);
    let others = format!(
        "SELECT count(*) FROM outbox.deliveries
          WHERE webhook_id = {other} AND next_attempt_at > now() + interval '50 minutes'"
    );
    assert_eq!(
        count(&client, &others).await,
        4,
        "another webhook's untouched"
    );
    // No attempt spent.
    let spent = format!(
        "SELECT coalesce(sum(attempts), 0) FROM outbox.deliveries WHERE webhook_id = {hook}"
    );
    assert_eq!(count(&client, &spent).await, n * 5 + 5 * 3);
}
