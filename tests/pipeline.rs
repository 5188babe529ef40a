//! End-to-end tests of the core pipeline: a real PostgreSQL database per
//! test, real HTTP receivers on 127.0.0.1, and `outboxd run` as a child
//! process.

use std::time::Duration;

use outboxd_core::signing::{self, Secret};
use outboxd_testkit::db::{add_webhook, count, publish_many};
use outboxd_testkit::{wait_until, Daemon, Receiver, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_outboxd");

#[tokio::test]
async fn fans_out_each_event_to_exactly_the_matching_webhooks_signed() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let receiver = Receiver::ok().await;
    let (exact, exact_secret) = add_webhook(
        &client,
        "exact",
        &receiver.url("/exact"),
        &["payment.received"],
    )
    .await;
    let (prefix, prefix_secret) =
        add_webhook(&client, "prefix", &receiver.url("/prefix"), &["payment.*"]).await;
    let (all, all_secret) = add_webhook(&client, "all", &receiver.url("/all"), &["*"]).await;
    add_webhook(&client, "none", &receiver.url("/none"), &["invoice.paid"]).await;

    publish_many(&client, "payment.received", 3).await;
    publish_many(&client, "payment.refund.created", 2).await;
    publish_many(&client, "account.created", 1).await;

    let _daemon = Daemon::start(BIN, &db.url, &[]);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            receiver.count() >= 3 + 5 + 6
        })
        .await,
        "expected 14 deliveries, got {}",
        receiver.count()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = receiver.requests();
    let secrets = [
        ("/exact", exact, exact_secret, 3),
        ("/prefix", prefix, prefix_secret, 5),
        ("/all", all, all_secret, 6),
        ("/none", 0, String::new(), 0),
    ];
    for (path, _id, secret, expected) in secrets {
        let got: Vec<_> = requests.iter().filter(|r| r.path == path).collect();
        assert_eq!(got.len(), expected, "deliveries to {path}");
        for r in got {
            let secret = Secret::parse(&secret).unwrap();
            let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
            assert!(
                signing::verify(
                    &secret,
                    r.header("webhook-id"),
                    ts,
                    &r.body,
                    r.header("webhook-signature")
                ),
                "signature of {path} verifies with that webhook's secret"
            );
            assert_eq!(r.header("content-type"), "application/json");
            assert!(r.header("webhook-id").starts_with("evt_"));
            let body = r.json();
            assert!(body["type"].is_string() && body["timestamp"].is_string());
            assert!(body["data"]["n"].is_number());
        }
    }
    assert_eq!(
        count(&client, "SELECT count(*) FROM outbox.delivery_log WHERE outcome = 'delivered' AND status_code = 200").await,
        14
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM outbox.events WHERE dispatched_at IS NULL"
        )
        .await,
        0
    );
}
