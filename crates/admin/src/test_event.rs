//! Test events: one signed request to one webhook, sent now from the
//! caller's process (not through the daemon's queue), so an admin sees at
//! once whether the endpoint works and why not.
//!
//! The request is built and sent by the deliverer's own code, through the
//! same SSRF guard, so it is exactly what the daemon would send. It is
//! recorded like any delivery (event, delivery in its final state, attempt),
//! marked as a test; the event is inserted already dispatched, so no daemon
//! fans it out and sends it a second time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::outcome::{describe_status, error_text, AttemptResult};
use outboxd_db::Claimed;
use outboxd_deliverer::send::Exchange;
use outboxd_deliverer::{single, HttpClient};
use serde::Serialize;
use tokio_postgres::Client;

use crate::format::ser_time;
use crate::{validate, webhook_by_id, Error, Result, WebhookRef};

/// The event type of a test event when none is given.
pub const DEFAULT_EVENT_TYPE: &str = "webhook.test";

const EXAMPLE: &str = "SELECT example_payload FROM outbox.event_types WHERE name = $1";

const INSERT_EVENT: &str = "
INSERT INTO outbox.events (event_type, payload, target_webhook_id, is_test, dispatched_at)
VALUES ($1, $2, $3, true, now())
RETURNING id, payload::text, created_at";

/// The delivery in its final state and its one attempt, in one statement.
const RECORD: &str = "
WITH d AS (
    INSERT INTO outbox.deliveries
           (event_id, webhook_id, state, attempts, lease, next_attempt_at,
            last_status, last_error, delivered_at, updated_at)
    VALUES ($1, $2, $3, 1, 1, now(), $4, $5,
            CASE WHEN $3::text = 'delivered' THEN now() END, now())
    RETURNING id)
INSERT INTO outbox.delivery_attempts
       (delivery_id, event_id, webhook_id, attempt, started_at, duration_ms,
        status_code, error, response_body, outcome)
SELECT d.id, $1, $2, 1, $6, $7, $4, $5, $8, $3 FROM d
RETURNING delivery_id";

/// What a test event did.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    #[serde(skip)]
    pub webhook: WebhookRef,
    pub webhook_id: i64,
    pub url: String,
    pub event_id: i64,
    pub event_type: String,
    /// The recorded delivery; None when the request was made but recording
    /// it failed (`record_error` says why).
    pub delivery_id: Option<i64>,
    pub record_error: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    pub latency_ms: f64,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// "HTTP 200 OK", when there was a response.
    pub status_line: Option<String>,
    /// The attempt's error: a note on the status, or why there was no response.
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Option<String>,
    pub success: bool,
    /// Why it did not work, for people; None on success.
    pub failure: Option<String>,
}

/// Sends one test event of `event_type` to the webhook now and records it.
/// The payload is the catalog's example for the type, else `{"test": true}`.
pub async fn send(
    client: &Client,
    http: &HttpClient,
    webhook_id: i64,
    event_type: &str,
    timeout: Duration,
) -> Result<TestResult> {
    validate::event_type(event_type)?;
    let hook = webhook_by_id(client, webhook_id).await?;
    if !hook.enabled {
        return Err(Error::Conflict(format!(
            "{hook} is disabled: enable it first (`outboxd webhooks enable {}`)",
            hook.id
        )));
    }
    let webhook = outboxd_db::webhooks::load_one(client, hook.id)
        .await
        .map_err(|e| Error::Conflict(format!("loading {hook}: {e}")))?
        .ok_or_else(|| Error::NotFound(format!("{hook} was removed just now")))?;
    let payload: serde_json::Value = client
        .query_opt(EXAMPLE, &[&event_type])
        .await?
        .map(|r| r.get(0))
        .unwrap_or_else(|| serde_json::json!({"test": true}));
    let event = client
        .query_one(INSERT_EVENT, &[&event_type, &payload, &hook.id])
        .await?;
    let delivery = Claimed {
        delivery_id: 0,
        lease: 0,
        attempt: 1,
        event_id: event.get(0),
        webhook_id: hook.id,
        event_type: event_type.to_owned(),
        payload: event.get::<_, String>(1).into(),
        created_at: event.get(2),
    };
    let (started_at, exchange) = single::attempt_once(http, &webhook, &delivery, timeout).await;
    let verdict = Verdict::of(&exchange);
    let recorded = record(client, &delivery, started_at, &exchange, &verdict).await;
    let (delivery_id, record_error) = match recorded {
        Ok(id) => (Some(id), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let status = match exchange.result {
        AttemptResult::Response { status, .. } => Some(status),
        AttemptResult::Transport(_) => None,
    };
    Ok(TestResult {
        webhook_id: hook.id,
        webhook: hook,
        url: webhook.url.clone(),
        event_id: delivery.event_id,
        event_type: event_type.to_owned(),
        delivery_id,
        record_error,
        started_at,
        latency_ms: exchange.elapsed.as_secs_f64() * 1000.0,
        status,
        status_line: status.map(status_line),
        error: verdict.error,
        response_body: exchange.response_body,
        success: verdict.failure.is_none(),
        failure: verdict.failure,
    })
}

/// What the attempt means here: one attempt, no retries, so anything but
/// 2xx is a failure (a 410 is reported; disabling is left to the daemon).
struct Verdict {
    status: Option<i32>,
    /// The attempt row's `error`, as the worker writes it.
    error: Option<String>,
    failure: Option<String>,
}

impl Verdict {
    fn of(exchange: &Exchange) -> Verdict {
        match &exchange.result {
            AttemptResult::Response { status, .. } => {
                let failure = (!(200..300).contains(status)).then(|| {
                    let mut why = format!("the endpoint answered {}", status_line(*status));
                    if let Some(note) = describe_status(*status) {
                        why.push_str(&format!(" ({note})"));
                    }
                    if *status == 410 {
                        why.push_str(" (the daemon disables a webhook that answers 410 Gone)");
                    }
                    why
                });
                Verdict {
                    status: Some(i32::from(*status)),
                    error: describe_status(*status).map(str::to_owned),
                    failure,
                }
            }
            AttemptResult::Transport(_) => {
                let error = error_text(&exchange.result);
                Verdict {
                    status: None,
                    failure: Some(error.clone().unwrap_or_else(|| "no response".into())),
                    error,
                }
            }
        }
    }

    fn state(&self) -> &'static str {
        if self.failure.is_none() {
            "delivered"
        } else {
            "failed"
        }
    }
}

/// "HTTP 503 Service Unavailable".
pub fn status_line(status: u16) -> String {
    match hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

async fn record(
    client: &Client,
    delivery: &Claimed,
    started_at: DateTime<Utc>,
    exchange: &Exchange,
    verdict: &Verdict,
) -> Result<i64> {
    let duration_ms = exchange.elapsed.as_secs_f64() * 1000.0;
    Ok(client
        .query_one(
            RECORD,
            &[
                &delivery.event_id,
                &delivery.webhook_id,
                &verdict.state(),
                &verdict.status,
                &verdict.error,
                &started_at,
                &duration_ms,
                &exchange.response_body,
            ],
        )
        .await?
        .get(0))
}
