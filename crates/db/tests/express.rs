//! The express lane of the event stream (migrations/V26, V27, V30) against a
//! real database, step by step: while a pass goes on, a tenant's events
//! committed after its snapshot are fanned out beside it when nothing of
//! the tenant is left before them, once, and the next pass skips them; a
//! tenant with events left in the pass, or whose events already had to
//! wait, is not overtaken; platform events keep to the pass; the lane run
//! alone (`next_events(0, n)`) leaves the pass where it was.

use outboxd_testkit::db::{backlog_types as backlog, count};
use outboxd_testkit::TestDb;
use tokio_postgres::{Client, GenericClient};

/// One round: at most `n` events of the pass, then at most `express` of the
/// express lane.
async fn next(client: &Client, n: i64, express: i64) -> Vec<String> {
    next_keyed(client, n, express, true).await
}

async fn next_keyed(client: &Client, n: i64, express: i64, keyed: bool) -> Vec<String> {
    client
        .query(
            "SELECT event_type FROM outbox.next_events($1, $2, $3)",
            &[&n, &express, &keyed],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One event of `tenant` (None: the platform's), committed or not as the
/// client's transaction goes.
async fn publish(client: &impl GenericClient, event_type: &str, tenant: Option<&str>) {
    publish_keyed(client, event_type, tenant, None).await;
}

async fn publish_keyed(
    client: &impl GenericClient,
    event_type: &str,
    tenant: Option<&str>,
    key: Option<&str>,
) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, tenant, ordering_key)
             VALUES ($1, '{}', $2, $3)",
            &[&event_type, &tenant, &key],
        )
        .await
        .unwrap();
}

/// Tenant a's events `a.1`..`a.n`, one transaction each.
async fn backlog_of_a(client: &Client, n: usize) {
    for i in 1..=n {
        publish(client, &format!("a.{i}"), Some("a")).await;
    }
}

async fn dispatched(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM outbox.events e WHERE outbox.is_dispatched(e)",
    )
    .await
}

#[tokio::test]
async fn express_events_are_fanned_out_once_and_skipped_by_the_next_pass() {
    let db = TestDb::new().await;
    let client = db.client().await;
    backlog_of_a(&client, 5).await;
    // The pass begins; b's events come after its snapshot.
    assert_eq!(next(&client, 2, 10).await, ["a.1", "a.2"]);
    publish(&client, "b.1", Some("b")).await;
    publish(&client, "b.2", Some("b")).await;
    // b has nothing in the pass: its events go beside a's, in order.
    assert_eq!(next(&client, 2, 10).await, ["a.3", "a.4", "b.1", "b.2"]);
    assert_eq!(backlog(&client).await, ["a.5"]);
    publish(&client, "b.3", Some("b")).await;
    // The round that ends the pass takes no express events: the next pass
    // is a round away.
    assert_eq!(next(&client, 2, 10).await, ["a.5"]);
    assert_eq!(backlog(&client).await, ["b.3"]);
    // The next pass fans out only what the lane left.
    assert_eq!(next(&client, 10, 10).await, ["b.3"]);
    assert!(next(&client, 10, 10).await.is_empty());
    assert!(backlog(&client).await.is_empty());
    assert_eq!(dispatched(&client).await, 8);
    // The lane's state went with the pass.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.dispatch_state
              WHERE upto IS NULL AND express_seen IS NULL AND express_waiting IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_tenant_with_events_left_in_the_pass_is_not_overtaken() {
    let db = TestDb::new().await;
    let client = db.client().await;
    backlog_of_a(&client, 3).await;
    publish(&client, "b.1", Some("b")).await;
    for i in 4..=6 {
        publish(&client, &format!("a.{i}"), Some("a")).await;
    }
    assert_eq!(next(&client, 2, 10).await, ["a.1", "a.2"]);
    // b.1 is still ahead in the pass: b.2 waits for the next pass.
    publish(&client, "b.2", Some("b")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.3"]);
    // The pass got past b.1, but b.2 waits: b.3 must not overtake it.
    publish(&client, "b.3", Some("b")).await;
    assert_eq!(next(&client, 1, 10).await, ["b.1"]);
    // c, meanwhile, has nothing before it.
    publish(&client, "c.1", Some("c")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.4", "c.1"]);
    assert_eq!(backlog(&client).await, ["a.5", "a.6", "b.2", "b.3"]);
    // a's own later events wait too: a is in the pass until its end.
    publish(&client, "a.7", Some("a")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.5"]);
    assert_eq!(next(&client, 1, 10).await, ["a.6"]);
    assert_eq!(next(&client, 1, 10).await, Vec::<String>::new());
    assert_eq!(next(&client, 10, 10).await, ["b.2", "b.3", "a.7"]);
    assert!(backlog(&client).await.is_empty());
    assert_eq!(dispatched(&client).await, 11);
}

/// A tenant's transaction that began before the pass and commits during it
/// was not in the pass's snapshot: the lane takes it, in the order a pass
/// would, and its tenant's later events after it. One of a tenant still in
/// the pass waits.
#[tokio::test]
async fn a_late_commit_of_a_tenant_takes_the_lane_unless_the_tenant_is_in_the_pass() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut b_session = db.client().await;
    let mut a_session = db.client().await;
    let late_b = b_session.transaction().await.unwrap();
    publish(&late_b, "b.late", Some("b")).await;
    let late_a = a_session.transaction().await.unwrap();
    publish(&late_a, "a.late", Some("a")).await;
    backlog_of_a(&client, 4).await;
    assert_eq!(next(&client, 2, 10).await, ["a.1", "a.2"]);
    late_b.commit().await.unwrap();
    late_a.commit().await.unwrap();
    publish(&client, "b.1", Some("b")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.3", "b.late", "b.1"]);
    assert_eq!(backlog(&client).await, ["a.4", "a.late"]);
    assert_eq!(next(&client, 10, 10).await, ["a.4"]);
    assert_eq!(next(&client, 10, 10).await, ["a.late"]);
    assert!(next(&client, 10, 10).await.is_empty());
    assert!(backlog(&client).await.is_empty());
    assert_eq!(dispatched(&client).await, 7);
}

#[tokio::test]
async fn platform_events_keep_to_the_pass() {
    let db = TestDb::new().await;
    let client = db.client().await;
    backlog_of_a(&client, 4).await;
    assert_eq!(next(&client, 2, 10).await, ["a.1", "a.2"]);
    publish(&client, "platform.1", None).await;
    publish(&client, "b.1", Some("b")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.3", "b.1"]);
    // Without a share for the lane (the default), nothing goes express.
    publish(&client, "b.2", Some("b")).await;
    assert_eq!(
        client
            .query("SELECT event_type FROM outbox.next_events(1)", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(backlog(&client).await, ["b.2", "platform.1"]);
    assert!(next(&client, 10, 10).await.is_empty());
    let mut rest = next(&client, 10, 10).await;
    rest.sort();
    assert_eq!(rest, ["b.2", "platform.1"]);
    assert!(backlog(&client).await.is_empty());
}

/// The lane's share is a bound per round: past it, a tenant waits for the
/// next pass like one still in it, and its later events with it. Keyed
/// events stay in the pass when the caller says so (an ordered platform
/// webhook gets every tenant's events of a key).
#[tokio::test]
async fn past_its_share_or_with_a_key_when_told_a_tenant_waits_for_the_next_pass() {
    let db = TestDb::new().await;
    let client = db.client().await;
    backlog_of_a(&client, 5).await;
    assert_eq!(next(&client, 1, 1).await, ["a.1"]);
    publish(&client, "b.1", Some("b")).await;
    publish(&client, "c.1", Some("c")).await;
    assert_eq!(next(&client, 1, 1).await, ["a.2", "b.1"]);
    publish(&client, "c.2", Some("c")).await;
    publish_keyed(&client, "d.1", Some("d"), Some("k")).await;
    publish(&client, "d.2", Some("d")).await;
    assert_eq!(next_keyed(&client, 1, 10, false).await, ["a.3"]);
    publish(&client, "e.1", Some("e")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.4", "e.1"]);
    assert_eq!(backlog(&client).await, ["a.5", "c.1", "c.2", "d.1", "d.2"]);
    assert_eq!(next(&client, 1, 10).await, ["a.5"]);
    assert_eq!(next(&client, 1, 10).await, Vec::<String>::new());
    assert_eq!(next(&client, 10, 10).await, ["c.1", "c.2", "d.1", "d.2"]);
    assert!(backlog(&client).await.is_empty());
}

/// The lane reads each event once: a flood of a waiting tenant's events
/// is looked at by the round after it committed, not again, even when a
/// transaction that began before the flood ends after that round (any
/// transaction of the cluster does; here one that writes nothing).
#[tokio::test]
async fn the_lane_reads_a_waiting_tenants_flood_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let elsewhere = db.client().await;
    backlog_of_a(&client, 4).await;
    assert_eq!(next(&client, 1, 10).await, ["a.1"]);
    elsewhere
        .batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, tenant)
             SELECT 'a.flood', '{}', 'a' FROM generate_series(1, 1000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(next(&client, 1, 10).await, ["a.2"]);
    elsewhere.batch_execute("COMMIT").await.unwrap();
    publish(&client, "b.1", Some("b")).await;
    // The lane's snapshot has moved past the flood: the round reads b.1
    // alone (a is waiting anyway).
    let before = stream_index_reads(&client).await;
    assert_eq!(next(&client, 1, 10).await, ["a.3", "b.1"]);
    let read = stream_index_reads(&client).await - before;
    assert!(
        read < 100,
        "the round read {read} entries of the stream's index: the lane read the flood again"
    );
}

/// Entries read from `events_stream` so far, this session's included.
async fn stream_index_reads(client: &Client) -> i64 {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    count(
        client,
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'events_stream'",
    )
    .await
}

/// `next_events(0, n)`, as the daemon calls it between a pass's rounds:
/// only the lane's events, the pass's position unmoved, nothing at all
/// outside a pass.
#[tokio::test]
async fn the_lane_alone_takes_nothing_of_the_pass_and_keeps_its_place() {
    let db = TestDb::new().await;
    let client = db.client().await;
    backlog_of_a(&client, 4).await;
    // No pass under way: the lane alone does nothing and starts none.
    assert!(next(&client, 0, 10).await.is_empty());
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.dispatch_state WHERE upto IS NULL"
        )
        .await,
        1
    );
    assert_eq!(next(&client, 2, 10).await, ["a.1", "a.2"]);
    publish(&client, "b.1", Some("b")).await;
    publish(&client, "a.5", Some("a")).await;
    // Between the pass's rounds: b's event alone, a's newer one not (a
    // still has events in the pass), and the pass where it was.
    assert_eq!(next(&client, 0, 10).await, ["b.1"]);
    assert!(next(&client, 0, 10).await.is_empty());
    publish(&client, "b.2", Some("b")).await;
    assert_eq!(next(&client, 1, 10).await, ["a.3", "b.2"]);
    assert_eq!(next(&client, 0, 10).await, Vec::<String>::new());
    assert_eq!(next(&client, 10, 10).await, ["a.4"]);
    // The next pass: a's later event, b's not again.
    assert_eq!(next(&client, 10, 10).await, ["a.5"]);
    assert!(backlog(&client).await.is_empty());
    assert_eq!(dispatched(&client).await, 7);
}
