//! Rate limits per webhook, as the receiver sees them: two daemons together
//! keep to the limit and, with a backlog, use all of it; a 429 with
//! Retry-After slows the whole webhook down for that long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outboxd_testkit::db::{add_webhook, publish_many};
use outboxd_testkit::{wait_until, Daemon, Receiver, Reply, TestDb};

use crate::support::{delivered_counter, ready, BIN};

async fn limit(client: &tokio_postgres::Client, webhook: i64, rate: i32) {
    client
        .execute(
            "UPDATE outbox.webhooks SET rate_limit = $2 WHERE id = $1",
            &[&webhook, &rate],
        )
        .await
        .expect("setting the rate limit");
}

/// Requests per whole second after `from`, for `seconds` seconds.
fn per_second(arrivals: &[Instant], from: Instant, seconds: usize) -> Vec<usize> {
    let mut counts = vec![0; seconds];
    for at in arrivals {
        if let Some(since) = at.checked_duration_since(from) {
            let s = since.as_secs() as usize;
            if s < seconds {
                counts[s] += 1;
            }
        }
    }
    counts
}

#[tokio::test]
async fn two_daemons_keep_a_webhook_to_its_rate_and_use_all_of_it() {
    const RATE: i32 = 50;
    const SECONDS: usize = 20;
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (webhook, _) = add_webhook(&client, "limited", &receiver.url("/limited"), &["*"]).await;
    limit(&client, webhook, RATE).await;
    let env = [("OUTBOXD_LEASE", "120s")];
    let a = Daemon::start(BIN, &db.url, &env);
    let b = Daemon::start(BIN, &db.url, &env);
    ready(&[&a, &b]).await;
    // More than the measured span can drain: a backlog all along.
    publish_many(
        &client,
        "order.created",
        (RATE as i64) * (SECONDS as i64 + 8),
    )
    .await;

    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() > 0 }).await,
        "nothing arrived\n{}\n{}",
        a.log(),
        b.log()
    );
    let first = receiver.requests()[0].at;
    // The first second holds the bucket's burst and both daemons' start.
    let from = first + Duration::from_secs(1);
    tokio::time::sleep_until((from + Duration::from_secs(SECONDS as u64 + 1)).into()).await;
    let arrivals: Vec<Instant> = receiver.requests().iter().map(|r| r.at).collect();
    let counts = per_second(&arrivals, from, SECONDS);
    let total: usize = counts.iter().sum();
    let expected = RATE as usize * SECONDS;
    assert!(
        total * 10 >= expected * 9 && total * 10 <= expected * 11,
        "{total} requests in {SECONDS}s at {RATE}/s (per second: {counts:?})"
    );
    // Any one second: at most the rate and the bucket's burst, with room
    // for a busy machine's timer jitter; never an idle gap.
    for (s, &n) in counts.iter().enumerate() {
        assert!(
            n <= RATE as usize * 13 / 10 && n >= RATE as usize / 2,
            "second {s}: {n} requests at {RATE}/s (per second: {counts:?})"
        );
    }
    // The budget was shared, not used by one daemon alone.
    let (by_a, by_b) = (delivered_counter(&a).await, delivered_counter(&b).await);
    assert!(by_a > 0 && by_b > 0, "delivered by a: {by_a}, by b: {by_b}");
}

#[tokio::test]
async fn a_429_with_retry_after_slows_the_whole_webhook_down_for_that_long() {
    const RATE: i32 = 40;
    let db = TestDb::new().await;
    let client = db.client().await;
    // One 429 with Retry-After: 4, then 200s.
    let answered = Arc::new(AtomicBool::new(false));
    let receiver = {
        let answered = answered.clone();
        Receiver::start(move |_| {
            if answered.swap(true, Ordering::SeqCst) {
                Reply::ok()
            } else {
                Reply::status(429).header("retry-after", "4")
            }
        })
        .await
    };
    let (webhook, _) = add_webhook(&client, "limited", &receiver.url("/slow"), &["*"]).await;
    limit(&client, webhook, RATE).await;
    let daemon = Daemon::start(BIN, &db.url, &[("OUTBOXD_LEASE", "120s")]);
    ready(&[&daemon]).await;
    publish_many(&client, "order.created", 600).await;
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() > 0 }).await,
        "nothing arrived\n{}",
        daemon.log()
    );
    let first = receiver.requests()[0].at;
    tokio::time::sleep_until((first + Duration::from_secs(8)).into()).await;
    let arrivals: Vec<Instant> = receiver.requests().iter().map(|r| r.at).collect();
    // Seconds 1-3 are inside the slowdown (half the rate); 5-7 after it.
    let counts = per_second(&arrivals, first, 8);
    let slowed: usize = counts[1..4].iter().sum();
    let after: usize = counts[5..8].iter().sum();
    assert!(
        slowed <= (RATE as usize / 2) * 3 * 13 / 10,
        "{slowed} requests in the 3 slowed seconds at {RATE}/s halved (per second: {counts:?})\n{}",
        daemon.log()
    );
    assert!(
        after >= RATE as usize * 3 * 8 / 10,
        "{after} requests in the 3 seconds after the slowdown at {RATE}/s (per second: {counts:?})"
    );
}
