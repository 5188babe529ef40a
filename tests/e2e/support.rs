//! What the end-to-end tests share: the binary under test and the delivery
//! log as the tests compare it.

use outboxd_testkit::Daemon;
use tokio_postgres::Client;

/// The `outboxd` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_outboxd");

/// One row of the delivery log, as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
}

async fn attempts_where(client: &Client, column: &str, id: i64, order: &str) -> Vec<Attempt> {
    let sql = format!(
        "SELECT attempt, status_code, error, outcome FROM outbox.delivery_attempts
          WHERE {column} = $1 ORDER BY {order}"
    );
    client
        .query(&sql, &[&id])
        .await
        .expect("reading attempts")
        .iter()
        .map(|r| Attempt {
            attempt: r.get(0),
            status_code: r.get(1),
            error: r.get(2),
            outcome: r.get(3),
        })
        .collect()
}

/// The attempt rows of one delivery, in attempt order.
pub async fn attempts_of_delivery(client: &Client, delivery_id: i64) -> Vec<Attempt> {
    attempts_where(client, "delivery_id", delivery_id, "attempt, id").await
}

/// The attempt rows of a webhook's deliveries, in the order written.
pub async fn attempts_of_webhook(client: &Client, webhook_id: i64) -> Vec<Attempt> {
    attempts_where(client, "webhook_id", webhook_id, "id").await
}

/// The `outboxd_deliveries_total{outcome="delivered"}` counter of one daemon.
pub async fn delivered_counter(daemon: &Daemon) -> u64 {
    let (_, body) = daemon.get("/metrics").await.unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with("outboxd_deliveries_total{outcome=\"delivered\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until `n` deliveries are in `state` (failing with the daemons'
/// logs after `timeout`).
pub async fn wait_for_deliveries_in(
    client: &Client,
    state: outboxd_core::DeliveryState,
    n: i64,
    daemons: &[&outboxd_testkit::Daemon],
) {
    let sql = format!("SELECT count(*) FROM outbox.deliveries WHERE state = '{state}'");
    outboxd_testkit::wait_for_count(client, &sql, n, std::time::Duration::from_secs(30), daemons)
        .await;
}
