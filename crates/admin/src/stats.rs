//! The numbers an on-call admin asks for first, from SQL alone (no running
//! daemon needed): what waits, how old the oldest is, and per webhook how
//! the last hour went. Each figure is answered from an index, as the
//! daemon's own sampler does, so it is cheap on a big log. What waits
//! includes a paused webhook's deferred events (V29).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::format::ser_opt_time;
use crate::Result;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub events_pending: i64,
    pub oldest_pending_event_age_seconds: Option<f64>,
    pub deliveries_pending: i64,
    pub deliveries_due: i64,
    pub deliveries_in_flight: i64,
    pub oldest_open_delivery_age_seconds: Option<f64>,
    pub attempts_last_hour: i64,
    pub failure_ratio_last_hour: Option<f64>,
    pub webhooks: Vec<WebhookStats>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookStats {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub attempts_last_hour: i64,
    pub delivered_last_hour: i64,
    pub retried_last_hour: i64,
    pub failed_last_hour: i64,
    pub failure_ratio_last_hour: Option<f64>,
    pub pending: i64,
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "ser_opt_time")]
    pub disabled_at: Option<DateTime<Utc>>,
}

/// $1: a tenant, or null for everything.
const QUEUE: &str = "
WITH d AS (
    SELECT d.state, d.next_attempt_at, d.created_at FROM outbox.deliveries d
     WHERE d.state IN ('pending', 'held', 'in_flight')
       AND ($1::text IS NULL OR d.webhook_id IN (SELECT id FROM outbox.webhooks WHERE tenant = $1)))
SELECT b.n, b.age,
       (SELECT count(*) FROM d WHERE state IN ('pending', 'held'))
         + (SELECT coalesce(sum(cardinality(f.event_ids)), 0)::int8
              FROM outbox.deferred_deliveries f
             WHERE $1::text IS NULL
                OR f.webhook_id IN (SELECT id FROM outbox.webhooks WHERE tenant = $1)),
       (SELECT count(*) FROM d WHERE state = 'pending' AND next_attempt_at <= now()),
       (SELECT count(*) FROM d WHERE state = 'in_flight'),
       (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM d)
  FROM (SELECT count(*) AS n, extract(epoch FROM now() - min(created_at))::float8 AS age
          FROM outbox.undispatched_events u
         WHERE $1::text IS NULL OR u.tenant = $1) AS b";

/// "Failures" are attempts that did not deliver (retries and final failures).
const PER_WEBHOOK: &str = "
SELECT w.id, w.name, w.enabled, h.attempts, h.delivered, h.retried, h.failed,
       outbox.open_deliveries(w.id),
       w.disabled_reason, w.disabled_at
  FROM outbox.webhooks w
  LEFT JOIN LATERAL (
        SELECT count(*) AS attempts,
               count(*) FILTER (WHERE a.outcome = 'delivered') AS delivered,
               count(*) FILTER (WHERE a.outcome = 'retry') AS retried,
               count(*) FILTER (WHERE a.outcome = 'failed') AS failed
          FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id AND a.started_at > now() - interval '1 hour') h ON true
 WHERE $1::text IS NULL OR w.tenant = $1
 ORDER BY w.id";

/// Share of attempts that did not deliver; None without attempts.
pub fn failure_ratio(attempts: i64, delivered: i64) -> Option<f64> {
    (attempts > 0).then(|| (attempts - delivered) as f64 / attempts as f64)
}

pub async fn stats(client: &Client) -> Result<Stats> {
    stats_of(client, None).await
}

/// The figures of one tenant's webhooks and events (None: everything).
pub async fn stats_of(client: &Client, tenant: Option<&str>) -> Result<Stats> {
    let q = client.query_one(QUEUE, &[&tenant]).await?;
    let webhooks: Vec<WebhookStats> = client
        .query(PER_WEBHOOK, &[&tenant])
        .await?
        .iter()
        .map(|r| {
            let (attempts, delivered): (i64, i64) = (r.get(3), r.get(4));
            WebhookStats {
                id: r.get(0),
                name: r.get(1),
                enabled: r.get(2),
                attempts_last_hour: attempts,
                delivered_last_hour: delivered,
                retried_last_hour: r.get(5),
                failed_last_hour: r.get(6),
                failure_ratio_last_hour: failure_ratio(attempts, delivered),
                pending: r.get(7),
                disabled_reason: r.get(8),
                disabled_at: r.get(9),
            }
        })
        .collect();
    let attempts: i64 = webhooks.iter().map(|w| w.attempts_last_hour).sum();
    let delivered: i64 = webhooks.iter().map(|w| w.delivered_last_hour).sum();
    Ok(Stats {
        events_pending: q.get(0),
        oldest_pending_event_age_seconds: q.get(1),
        deliveries_pending: q.get(2),
        deliveries_due: q.get(3),
        deliveries_in_flight: q.get(4),
        oldest_open_delivery_age_seconds: q.get(5),
        attempts_last_hour: attempts,
        failure_ratio_last_hour: failure_ratio(attempts, delivered),
        webhooks,
    })
}
