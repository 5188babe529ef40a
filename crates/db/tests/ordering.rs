//! The ordering schema against a real database: publish takes an ordering
//! key by name (and still takes the old calls), the SQL rule of which
//! delivery of a key may go next and which held one is promoted agree
//! with crates/core's, and a policy must be known.

use outboxd_core::ordering::{is_claimable, promoted, FailurePolicy, Stage};
use outboxd_testkit::db::add_webhook;
use outboxd_testkit::TestDb;
use tokio_postgres::Client;

async fn publish(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test]
async fn publish_takes_an_ordering_key_by_name_and_the_old_calls_still_work() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let keyed = publish(
        &client,
        "SELECT outbox.publish('order.paid', '{}', ordering_key => 'order-42')",
    )
    .await;
    let plain = publish(&client, "SELECT outbox.publish('order.paid', '{}')").await;
    let idem = publish(&client, "SELECT outbox.publish('order.paid', '{}', 'k1')").await;
    let again = publish(
        &client,
        "SELECT outbox.publish('order.paid', '{}', idempotency_key => 'k1', ordering_key => 'x')",
    )
    .await;
    assert_eq!(
        idem, again,
        "an idempotency key still returns the first event"
    );
    let keys: Vec<(i64, Option<String>)> = client
        .query(
            "SELECT id, ordering_key FROM outbox.events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        keys,
        vec![
            (keyed, Some("order-42".into())),
            (plain, None),
            (idem, None)
        ]
    );
    // A tenant and an ordering key together, both by name.
    let id: i64 = client
        .query_one(
            "SELECT outbox.publish('order.paid', '{}', tenant => 'acme', ordering_key => 'order-7')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let row = client
        .query_one(
            "SELECT tenant, ordering_key FROM outbox.events WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("acme"));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("order-7"));
}

#[tokio::test]
async fn an_ordered_webhook_is_accepted_and_a_policy_must_be_known() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let (id, _) = add_webhook(&client, "hook", "http://127.0.0.1:9/hook", &["*"]).await;
    let refused = |sql: &'static str| {
        let client = &client;
        async move {
            let e = client.execute(sql, &[&id]).await.unwrap_err();
            let db = e.as_db_error().expect("a database error").clone();
            (
                db.code().code().to_owned(),
                db.constraint().map(str::to_owned),
            )
        }
    };
    client
        .execute(
            "UPDATE outbox.webhooks SET ordered = true WHERE id = $1",
            &[&id],
        )
        .await
        .expect("ordered webhooks are available");
    assert_eq!(
        refused("UPDATE outbox.webhooks SET ordering_policy = 'stop' WHERE id = $1").await,
        ("23514".into(), Some("ordering_policy_known".into()))
    );
    client
        .execute(
            "UPDATE outbox.webhooks SET ordering_policy = 'halt' WHERE id = $1",
            &[&id],
        )
        .await
        .expect("halt is a policy");
}

/// The database's form of a stage: (state, released).
fn row_of(stage: Stage) -> (&'static str, bool) {
    match stage {
        Stage::Pending => ("pending", false),
        Stage::InFlight => ("in_flight", false),
        Stage::Held => ("held", false),
        Stage::Delivered => ("delivered", false),
        Stage::Failed { released } => ("failed", released),
        Stage::Cancelled => ("cancelled", false),
    }
}

#[tokio::test]
async fn the_sql_rule_agrees_with_the_core_rule() {
    use Stage::*;
    let db = TestDb::new().await;
    let client = db.client().await;
    let (webhook, _) = add_webhook(&client, "hook", "http://127.0.0.1:9/hook", &["*"]).await;
    let failed = Failed { released: false };
    let keys: &[&[Stage]] = &[
        &[Pending, Pending, Pending],
        &[InFlight, Pending],
        &[Delivered, Pending, Pending],
        &[failed, Pending],
        &[Failed { released: true }, Pending],
        &[Cancelled, Pending],
        &[Pending, Delivered, Pending],
        &[Delivered, failed, Pending, InFlight],
        &[Delivered, Held, Held],
        &[failed, Held],
        &[Failed { released: true }, Held],
        &[Cancelled, Held, Pending],
        &[InFlight, Held],
        &[Held, Pending],
    ];
    for policy in [FailurePolicy::Skip, FailurePolicy::Halt] {
        client
            .batch_execute("DELETE FROM outbox.deliveries; DELETE FROM outbox.events")
            .await
            .unwrap();
        for (k, key) in keys.iter().enumerate() {
            for stage in key.iter() {
                let (state, released) = row_of(*stage);
                client
                    .execute(
                        "WITH e AS (INSERT INTO outbox.events (event_type, payload, ordering_key, dispatched_at)
                                    VALUES ('order.paid', '{}', $2, now()) RETURNING id)
                         INSERT INTO outbox.deliveries (event_id, webhook_id, state, ordering_key, released_at)
                         SELECT id, $1, $3, $2, CASE WHEN $4 THEN now() END FROM e",
                        &[&webhook, &format!("key-{k}"), &state, &released],
                    )
                    .await
                    .unwrap();
            }
        }
        // A delivery without a key is never held back.
        client
            .execute(
                "WITH e AS (INSERT INTO outbox.events (event_type, payload, dispatched_at)
                            VALUES ('order.paid', '{}', now()) RETURNING id)
                 INSERT INTO outbox.deliveries (event_id, webhook_id) SELECT id, $1 FROM e",
                &[&webhook],
            )
            .await
            .unwrap();
        let rows = client
            .query(
                "SELECT d.ordering_key, d.state, outbox.is_next_of_key(d, true, $1)
                   FROM outbox.deliveries d ORDER BY d.event_id",
                &[&policy.as_str()],
            )
            .await
            .unwrap();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for r in rows {
            let (key, state, next): (Option<String>, String, bool) = (r.get(0), r.get(1), r.get(2));
            let Some(key) = key else {
                assert!(next, "an unkeyed delivery is never held back");
                continue;
            };
            let k: usize = key.trim_start_matches("key-").parse().unwrap();
            let i = index.entry(key.clone()).or_default();
            if state == "pending" {
                assert_eq!(
                    next,
                    is_claimable(keys[k], *i, policy),
                    "{:?} #{i} under {policy}",
                    keys[k]
                );
            }
            *i += 1;
        }
        // Promotion, as the result writer asks for it after a head
        // finished: the held delivery the core rule names, or none.
        client
            .execute(
                "UPDATE outbox.webhooks SET ordered = true, ordering_policy = $2 WHERE id = $1",
                &[&webhook, &policy.as_str()],
            )
            .await
            .unwrap();
        let names: Vec<String> = (0..keys.len()).map(|k| format!("key-{k}")).collect();
        let webhooks = vec![webhook; keys.len()];
        let promoted_rows = client
            .query(
                "SELECT d.ordering_key,
                        (SELECT count(*) FROM outbox.deliveries e
                          WHERE e.ordering_key = d.ordering_key AND e.event_id < d.event_id)
                   FROM outbox.promote_held($1, $2) p JOIN outbox.deliveries d ON d.id = p",
                &[&webhooks, &names],
            )
            .await
            .unwrap();
        let got: std::collections::HashMap<String, i64> =
            promoted_rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for (k, key) in keys.iter().enumerate() {
            assert_eq!(
                got.get(&names[k]).map(|&i| i as usize),
                promoted(key, policy),
                "promotion of {key:?} under {policy}"
            );
        }
    }
}
