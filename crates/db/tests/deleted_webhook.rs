//! A webhook deleted while its requests run: what the deliverer writes for
//! it afterwards (its result, a breaker's pause, a rate limit's take or
//! slowdown) is skipped or written without failing, and the results of
//! other webhooks written with it land.

use std::time::Duration;

use chrono::Utc;
use outboxd_core::outcome::Outcome;
use outboxd_db::claim::Wants;
use outboxd_db::{claim, connect_pool, health, rate, results, AttemptRecord, Claimed};
use outboxd_testkit::db::{add_webhook, count};
use outboxd_testkit::TestDb;
use tokio_postgres::Client;

/// A webhook with one due delivery.
async fn webhook_with_delivery(client: &Client, name: &str) -> i64 {
    let (webhook, _) = add_webhook(client, name, "http://127.0.0.1:9/hook", &["*"]).await;
    client
        .execute(
            "WITH e AS (
                 INSERT INTO outbox.events (event_type, payload, dispatched_at)
                 VALUES ('order.created', '{}', now()) RETURNING id)
             INSERT INTO outbox.deliveries (event_id, webhook_id) SELECT id, $1 FROM e",
            &[&webhook],
        )
        .await
        .expect("inserting a delivery");
    webhook
}

fn failed_with(c: &Claimed, status: i32) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        lease: c.lease,
        event_id: c.event_id,
        webhook_id: c.webhook_id,
        attempt: c.attempt,
        started_at: Utc::now(),
        duration_ms: 3.0,
        url: Some("http://127.0.0.1:9/hook".into()),
        status_code: Some(status),
        error: None,
        response_body: Some("busy".into()),
        outcome: if status == 200 {
            Outcome::Delivered
        } else {
            Outcome::Retry
        },
        retry_in_ms: (status != 200).then_some(10_000.0),
        gone: false,
        cancelled: false,
        ordering_key: None,
    }
}

#[tokio::test]
async fn a_deleted_webhooks_result_and_pause_neither_fail_nor_hold_up_others() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 4).expect("a pool");
    let deleted = webhook_with_delivery(&client, "deleted").await;
    let kept = webhook_with_delivery(&client, "kept").await;
    client
        .execute(
            "UPDATE outbox.webhooks SET rate_limit = 10 WHERE id = $1",
            &[&deleted],
        )
        .await
        .unwrap();
    let claimed = claim::claim(
        &pool,
        &Wants::only(&[(deleted, 1), (kept, 1)]),
        10,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 2);

    // Deleted while both requests run.
    client
        .execute("DELETE FROM outbox.webhooks WHERE id = $1", &[&deleted])
        .await
        .unwrap();

    let batch: Vec<AttemptRecord> = claimed
        .iter()
        .map(|c| failed_with(c, if c.webhook_id == kept { 200 } else { 503 }))
        .collect();
    let recorded = results::record(&pool, &batch)
        .await
        .expect("the batch is written");
    let kept_delivery = claimed.iter().find(|c| c.webhook_id == kept).unwrap();
    assert!(recorded.accepted.contains(&kept_delivery.delivery_id));
    let state: String = client
        .query_one(
            "SELECT state::text FROM outbox.deliveries WHERE id = $1",
            &[&kept_delivery.delivery_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "delivered");

    // The breaker opening on its failures, and its rate bucket: nothing to
    // write, and no error.
    let paused = health::pause(
        &pool,
        deleted,
        Duration::from_secs(30),
        "HTTP 503",
        Duration::from_secs(3600),
    )
    .await
    .expect("pausing a deleted webhook is skipped");
    assert_eq!(paused, health::Paused::default());
    let grant = rate::take(&pool, deleted, 5).await.expect("no bucket");
    assert_eq!(grant.granted, 5);
    let slowed = rate::slow_down(&pool, deleted, Duration::from_secs(10))
        .await
        .expect("no rate");
    assert_eq!(slowed, None);
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhook_health").await,
        0
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.rate_buckets").await,
        0
    );

    // The kept webhook pauses as usual.
    health::pause(
        &pool,
        kept,
        Duration::from_secs(30),
        "HTTP 503",
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.webhook_health").await,
        1
    );
}
