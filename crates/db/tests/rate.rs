//! The shared token bucket against a real database: sessions taking at once
//! never get more than the burst plus the refill and, asking as told, get
//! close to the whole rate; a webhook without a limit is never held back; a
//! 429's slowdown halves the rate once per overload; a bad limit is refused
//! without printing the row.

use std::time::{Duration, Instant};

use outboxd_core::rate::Shape;
use outboxd_db::{connect_pool, rate, Pool};
use outboxd_testkit::db::add_webhook;
use outboxd_testkit::TestDb;
use tokio_postgres::Client;

async fn setup() -> (TestDb, Client, Pool) {
    let db = TestDb::new().await;
    let client = db.client().await;
    let pool = connect_pool(db.config.clone(), 8).expect("a pool");
    (db, client, pool)
}

async fn limited(client: &Client, rate_limit: i32) -> i64 {
    let (id, _) = add_webhook(client, "limited", "http://127.0.0.1:9/hook", &["*"]).await;
    client
        .execute(
            "UPDATE outbox.webhooks SET rate_limit = $2 WHERE id = $1",
            &[&id, &rate_limit],
        )
        .await
        .expect("setting the limit");
    id
}

/// Takes tokens as the deliverer's gate does, until `span` has passed:
/// asks for `wanted`, sleeps as long as the bucket says when it is short.
async fn taker(pool: Pool, webhook: i64, wanted: u32, span: Duration) -> u64 {
    let until = Instant::now() + span;
    let mut total = 0u64;
    while Instant::now() < until {
        let grant = rate::take(&pool, webhook, wanted).await.expect("taking");
        total += u64::from(grant.granted);
        if grant.granted == 0 {
            tokio::time::sleep(grant.wait.max(Duration::from_millis(1))).await;
        }
    }
    total
}

#[tokio::test]
async fn four_sessions_share_one_budget_and_get_close_to_all_of_it() {
    let (_db, client, pool) = setup().await;
    const RATE: i32 = 50;
    let webhook = limited(&client, RATE).await;
    let span = Duration::from_secs(4);
    let started = Instant::now();
    let takers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(taker(pool.clone(), webhook, 10, span)))
        .collect();
    let mut total = 0;
    for t in takers {
        total += t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let shape = Shape::new(f64::from(RATE));
    let most = shape.burst + f64::from(RATE) * elapsed;
    assert!(
        (total as f64) <= most + 1.0,
        "{total} tokens in {elapsed:.2}s at {RATE}/s"
    );
    // Four sessions competing on a loaded machine: 90% of the refill of the
    // span they asked in.
    assert!(
        (total as f64) >= 0.9 * f64::from(RATE) * span.as_secs_f64(),
        "{total} tokens in {elapsed:.2}s at {RATE}/s"
    );
}

#[tokio::test]
async fn a_fresh_bucket_gives_its_burst_then_says_how_long_to_wait() {
    let (_db, client, pool) = setup().await;
    let webhook = limited(&client, 50).await;
    let first = rate::take(&pool, webhook, 100).await.unwrap();
    assert_eq!(first.granted, 5, "a full bucket: 100 ms of 50/s");
    let second = rate::take(&pool, webhook, 100).await.unwrap();
    assert_eq!(second.granted, 0);
    assert!(
        second.wait <= Duration::from_millis(40) && second.wait > Duration::ZERO,
        "two tokens at 50/s: {:?}",
        second.wait
    );
    tokio::time::sleep(second.wait + Duration::from_millis(5)).await;
    assert!(rate::take(&pool, webhook, 100).await.unwrap().granted >= 2);
}

#[tokio::test]
async fn a_webhook_without_a_limit_gets_all_it_wants() {
    let (_db, client, pool) = setup().await;
    let (webhook, _) = add_webhook(&client, "free", "http://127.0.0.1:9/hook", &["*"]).await;
    for _ in 0..3 {
        let grant = rate::take(&pool, webhook, 1000).await.unwrap();
        assert_eq!((grant.granted, grant.wait), (1000, Duration::ZERO));
    }
    assert_eq!(
        rate::slow_down(&pool, webhook, Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
    let buckets: i64 = client
        .query_one("SELECT count(*) FROM outbox.rate_buckets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(buckets, 0, "no bucket for an unlimited webhook");
}

#[tokio::test]
async fn a_429_halves_the_rate_once_per_overload_for_as_long_as_it_asked() {
    let (_db, client, pool) = setup().await;
    let webhook = limited(&client, 40).await;
    let five = Duration::from_secs(5);
    assert_eq!(
        rate::slow_down(&pool, webhook, five).await.unwrap(),
        Some(20.0)
    );
    // The other requests in flight answer 429 too: the same overload.
    assert_eq!(
        rate::slow_down(&pool, webhook, five).await.unwrap(),
        Some(20.0)
    );
    client
        .execute(
            "UPDATE outbox.rate_buckets SET slowed_at = slowed_at - interval '2 seconds'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rate::slow_down(&pool, webhook, five).await.unwrap(),
        Some(10.0)
    );
    // At 10/s a grant is one token and the bucket holds one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rate::take(&pool, webhook, 100).await.unwrap().granted, 1);
    let wait = rate::take(&pool, webhook, 100).await.unwrap().wait;
    assert!(
        wait > Duration::from_millis(50),
        "one token at 10/s: {wait:?}"
    );
    // When the slowdown ends the limit is back.
    client
        .execute(
            "UPDATE outbox.rate_buckets SET slowed_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rate::take(&pool, webhook, 100).await.unwrap().granted, 4);
}

#[tokio::test]
async fn a_limit_below_one_is_refused_without_showing_the_secret() {
    let (_db, client, _pool) = setup().await;
    let (id, secret) = add_webhook(&client, "hook", "http://127.0.0.1:9/hook", &["*"]).await;
    for bad in [0, -5] {
        let e = client
            .execute(
                "UPDATE outbox.webhooks SET rate_limit = $2 WHERE id = $1",
                &[&id, &bad],
            )
            .await
            .unwrap_err();
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "23514");
        assert_eq!(db.constraint(), Some("rate_limit_positive"));
        let text = format!("{db:?}");
        assert!(text.contains("rate_limit"), "{text}");
        assert!(!text.contains(&secret), "the secret leaked: {text}");
    }
    client
        .execute(
            "UPDATE outbox.webhooks SET rate_limit = NULL WHERE id = $1",
            &[&id],
        )
        .await
        .expect("null is no limit");
}

#[tokio::test]
async fn deleting_a_webhook_deletes_its_bucket() {
    let (_db, client, pool) = setup().await;
    let webhook = limited(&client, 5).await;
    rate::take(&pool, webhook, 1).await.unwrap();
    client
        .execute("DELETE FROM outbox.webhooks WHERE id = $1", &[&webhook])
        .await
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM outbox.rate_buckets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
