//! The event stream of migrations/V8 against a real database, step by step:
//! `outbox.next_events` returns each committed event once, in passes of
//! bounded size, whatever order transactions commit in, and
//! `outbox.undispatched_events` agrees with it at every step (late commits
//! behind the pass's position included).

use outboxd_testkit::db::{backlog_types as backlog, count};
use outboxd_testkit::TestDb;
use tokio_postgres::{Client, GenericClient};

async fn next(client: &Client, n: i64) -> Vec<String> {
    client
        .query("SELECT event_type FROM outbox.next_events($1)", &[&n])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// One event, committed or not as the client's transaction goes.
async fn publish(client: &impl GenericClient, event_type: &str) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload) VALUES ($1, '{}')",
            &[&event_type],
        )
        .await
        .unwrap();
}

/// `n` events as test events are written: already dispatched.
async fn test_events(client: &Client, n: i64) {
    client
        .execute(
            "INSERT INTO outbox.events (event_type, payload, dispatched_at)
             SELECT 'test', '{}', now() FROM generate_series(1, $1::int8)",
            &[&n],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn each_committed_event_comes_once_whatever_the_commit_order() {
    let db = TestDb::new().await;
    let client = db.client().await;
    assert!(next(&client, 10).await.is_empty());

    // A transaction that writes first and commits last.
    let mut late = db.client().await;
    let late = late.transaction().await.unwrap();
    publish(&late, "late").await;
    for t in ["a.1", "a.2", "a.3"] {
        publish(&client, t).await;
    }
    assert_eq!(backlog(&client).await, ["a.1", "a.2", "a.3"]);

    // A pass in steps of two: its position moves past a.1 and a.2.
    assert_eq!(next(&client, 2).await, ["a.1", "a.2"]);
    assert_eq!(backlog(&client).await, ["a.3"]);
    // The late one commits behind the pass's position: it is backlog at
    // once, and comes in the next pass (this one saw it running).
    late.commit().await.unwrap();
    publish(&client, "b.1").await;
    assert_eq!(backlog(&client).await, ["a.3", "b.1", "late"]);
    assert_eq!(next(&client, 2).await, ["a.3"]);
    assert_eq!(backlog(&client).await, ["b.1", "late"]);
    let mut second = next(&client, 10).await;
    second.sort();
    assert_eq!(second, ["b.1", "late"]);
    assert!(backlog(&client).await.is_empty());
    assert!(next(&client, 10).await.is_empty());

    // A rolled-back transaction leaves nothing; test events (dispatched_at
    // set) are not in the stream, nor do they fill a batch.
    let mut aborted = db.client().await;
    let aborted = aborted.transaction().await.unwrap();
    publish(&aborted, "aborted").await;
    test_events(&client, 5).await;
    publish(&client, "c.1").await;
    aborted.rollback().await.unwrap();
    assert_eq!(backlog(&client).await, ["c.1"]);
    assert_eq!(next(&client, 2).await, ["c.1"]);
    assert!(backlog(&client).await.is_empty());

    // A pass that ends while a transaction is open: between passes, its
    // event is backlog once it commits (it was running at `done`).
    let mut open = db.client().await;
    let open = open.transaction().await.unwrap();
    publish(&open, "open").await;
    publish(&client, "d.1").await;
    assert_eq!(next(&client, 10).await, ["d.1"]);
    assert!(backlog(&client).await.is_empty());
    open.commit().await.unwrap();
    assert_eq!(backlog(&client).await, ["open"]);
    assert_eq!(next(&client, 10).await, ["open"]);
    assert!(backlog(&client).await.is_empty());

    // Every committed event is accounted for: eight through the stream,
    // five test events marked when written; the rolled-back one does not
    // exist.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.events e WHERE outbox.is_dispatched(e)"
        )
        .await,
        13
    );
}

/// Test events are not in the stream, but a pass reads past them: the
/// position must move past them even when the pass returns nothing, or
/// every later pass reads them again (a million of them took seconds).
#[tokio::test]
async fn a_pass_over_test_events_alone_moves_past_them() {
    let db = TestDb::new().await;
    let client = db.client().await;
    test_events(&client, 50).await;
    assert!(next(&client, 10).await.is_empty());
    let behind: i64 = count(
        &client,
        "SELECT count(*) FROM outbox.events
          WHERE NOT pg_visible_in_snapshot(xid, (SELECT done FROM outbox.dispatch_state))",
    )
    .await;
    assert_eq!(
        behind, 0,
        "the progress row did not move past the test events"
    );
}

/// A round with nothing to do takes no lock and writes nothing (migrations/V9),
/// also while a transaction that was running at the last pass is still
/// open, and what comes next is still found.
#[tokio::test]
async fn an_idle_round_writes_nothing() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let mut open = db.client().await;
    publish(&client, "a").await;
    assert_eq!(next(&client, 10).await, ["a"]);

    let late = open.transaction().await.unwrap();
    publish(&late, "late").await;
    publish(&client, "b").await;
    assert_eq!(next(&client, 10).await, ["b"]);
    for _ in 0..3 {
        let tx = client.transaction().await.unwrap();
        let rows = tx
            .query("SELECT * FROM outbox.next_events(10)", &[])
            .await
            .unwrap();
        assert!(rows.is_empty());
        let xid: Option<String> = tx
            .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(xid, None, "an idle round took a transaction id: it wrote");
        tx.commit().await.unwrap();
    }
    late.commit().await.unwrap();
    assert_eq!(next(&client, 10).await, ["late"]);
    publish(&client, "c").await;
    assert_eq!(next(&client, 10).await, ["c"]);
    assert!(backlog(&client).await.is_empty());
}
