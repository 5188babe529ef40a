//! The delivery log, filtered (outbox.delivery_log), and one delivery with
//! every attempt and the stored response bodies. Both read what an admin
//! could read with SQL, nothing a caller alone knows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use outboxd_core::DeliveryState;

use crate::format::{ser_opt_time, ser_time};
use crate::json::StoredJson;
use crate::{Error, Result};

/// A state filter as a caller gives it, checked.
pub fn state(given: &str) -> Result<DeliveryState> {
    given
        .trim()
        .parse()
        .map_err(|e: outboxd_core::state::UnknownState| Error::invalid("state", e.to_string()))
}

/// Unset filters are None.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub webhook_id: Option<i64>,
    pub state: Option<DeliveryState>,
    pub event_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Only deliveries to this tenant's webhooks.
    pub tenant: Option<String>,
}

/// One attempt of the log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogRow {
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub webhook_name: Option<String>,
    pub event_id: i64,
    pub event_type: Option<String>,
    pub attempt: i32,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: f64,
    /// pending, in_flight, held, delivered, failed or cancelled.
    #[schema(value_type = Option<String>)]
    pub delivery_state: Option<DeliveryState>,
    pub is_test: bool,
}

/// Each query is planned with its actual values, so the unused conditions
/// fold away.
const LOG: &str = "
SELECT started_at, delivery_id, webhook_id, webhook_name, event_id, event_type, attempt,
       outcome, status_code, error, duration_ms, delivery_state, is_test
  FROM outbox.delivery_log
 WHERE ($1::int8 IS NULL OR webhook_id = $1)
   AND ($2::text IS NULL OR delivery_state = $2)
   AND ($3::text IS NULL OR event_type = $3)
   AND ($4::timestamptz IS NULL OR started_at >= $4)
   AND ($6::text IS NULL OR webhook_id IN (SELECT id FROM outbox.webhooks WHERE tenant = $6))
 ORDER BY attempt_id DESC
 LIMIT $5";

/// The newest attempts that match, newest first.
pub async fn log(client: &Client, f: &LogFilter) -> Result<Vec<LogRow>> {
    if let Some(t) = &f.event_type {
        crate::validate::event_type(t)?;
    }
    let rows = client
        .query(
            LOG,
            &[
                &f.webhook_id,
                &f.state.map(DeliveryState::as_str),
                &f.event_type,
                &f.since,
                &f.limit,
                &f.tenant,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LogRow {
            started_at: r.get(0),
            delivery_id: r.get(1),
            webhook_id: r.get(2),
            webhook_name: r.get(3),
            event_id: r.get(4),
            event_type: r.get(5),
            attempt: r.get(6),
            outcome: r.get(7),
            status_code: r.get(8),
            error: r.get(9),
            duration_ms: r.get(10),
            delivery_state: r.get(11),
            is_test: r.get(12),
        })
        .collect())
}

/// One delivery, its event and every attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub webhook_id: i64,
    pub webhook_name: Option<String>,
    pub webhook_url: Option<String>,
    pub event_type: Option<String>,
    /// The event's JSON payload, as stored.
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<StoredJson>,
    #[serde(serialize_with = "ser_opt_time")]
    pub event_created_at: Option<DateTime<Utc>>,
    pub is_test: bool,
    /// pending, in_flight, held, delivered, failed or cancelled.
    #[schema(value_type = String)]
    pub state: DeliveryState,
    /// Attempts since the delivery was created or last replayed (the budget).
    pub attempts: i32,
    /// Attempts in all, across replays.
    pub total_attempts: i32,
    /// How often it was replayed.
    pub replays: i32,
    #[serde(serialize_with = "ser_time")]
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: i32,
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub outcome: String,
    pub response_body: Option<String>,
    /// The URL the request went to (None for attempts logged before it was recorded).
    pub url: Option<String>,
}

const DELIVERY: &str = "
SELECT d.id, d.event_id, d.webhook_id, w.name, w.url, e.event_type, e.payload::text,
       e.created_at, coalesce(e.is_test, false), d.state, d.attempts, d.next_attempt_at,
       d.last_status, d.last_error, d.created_at, d.delivered_at,
       d.earlier_attempts + d.attempts, d.replays
  FROM outbox.deliveries d
  LEFT JOIN outbox.webhooks w ON w.id = d.webhook_id
  LEFT JOIN outbox.events e ON e.id = d.event_id
 WHERE d.id = $1";

const ATTEMPTS: &str = "
SELECT attempt, started_at, duration_ms, status_code, error, outcome, response_body, url
  FROM outbox.delivery_attempts
 WHERE delivery_id = $1
 ORDER BY id";

/// One delivery with its attempts.
pub async fn show(client: &Client, id: i64) -> Result<Delivery> {
    let Some(d) = client.query_opt(DELIVERY, &[&id]).await? else {
        return Err(Error::NotFound(format!("no delivery with id {id}")));
    };
    let attempt_log = client
        .query(ATTEMPTS, &[&id])
        .await?
        .iter()
        .map(|a| Attempt {
            attempt: a.get(0),
            started_at: a.get(1),
            duration_ms: a.get(2),
            status_code: a.get(3),
            error: a.get(4),
            outcome: a.get(5),
            response_body: a.get(6),
            url: a.get(7),
        })
        .collect();
    Ok(Delivery {
        id: d.get(0),
        event_id: d.get(1),
        webhook_id: d.get(2),
        webhook_name: d.get(3),
        webhook_url: d.get(4),
        event_type: d.get(5),
        payload: d.get::<_, Option<String>>(6).map(StoredJson::from_text),
        event_created_at: d.get(7),
        is_test: d.get(8),
        state: d.get(9),
        attempts: d.get(10),
        total_attempts: d.get(16),
        replays: d.get(17),
        next_attempt_at: d.get(11),
        last_status: d.get(12),
        last_error: d.get(13),
        created_at: d.get(14),
        delivered_at: d.get(15),
        attempt_log,
    })
}
