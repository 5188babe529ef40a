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
use outboxd_core::outcome::{describe_status, error_text, log_millis, AttemptResult};
use outboxd_core::DeliveryState;
use outboxd_db::{Claimed, Pool};
use outboxd_deliverer::send::Exchange;
use outboxd_deliverer::{single, Clients};
use serde::Serialize;
use tokio_postgres::Client;

use crate::format::ser_time;
use crate::{validate, webhook_by_id, Error, Result, WebhookRef};

/// The event type of a test event when none is given.
pub const DEFAULT_EVENT_TYPE: &str = "webhook.test";

/// The payload is the catalog's example, copied in SQL: it may be nested
/// deeper than serde_json parses.
const INSERT_EVENT: &str = "
INSERT INTO outbox.events (event_type, payload, target_webhook_id, is_test, dispatched_at)
VALUES ($1, coalesce((SELECT example_payload FROM outbox.event_types WHERE name = $1),
                     '{\"test\": true}'), $2, true, now())
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
        status_code, error, response_body, outcome, url)
SELECT d.id, $1, $2, 1, $6, $7, $4, $5, $8, $3, $9 FROM d
RETURNING delivery_id";

/// What a test event did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
/// A pooled connection is taken for the preparation and again for the
/// record, never held while the request is out: a hanging endpoint must not
/// take the connections deliveries and `/readyz` need.
pub async fn send(
    pool: &Pool,
    http: &Clients,
    webhook_id: i64,
    event_type: &str,
    timeout: Duration,
) -> Result<TestResult> {
    let prepared = {
        let client = connection(pool).await?;
        prepare(&client, webhook_id, event_type).await?
    };
    let attempted = prepared.attempt(http, timeout).await;
    Ok(match connection(pool).await {
        Ok(client) => attempted.record(&client).await,
        Err(e) => attempted.unrecorded(e.to_string()),
    })
}

async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))
}

/// A test event ready to send: the webhook loaded and the event inserted.
pub struct Prepared {
    hook: WebhookRef,
    webhook: outboxd_db::Webhook,
    delivery: Claimed,
}

/// A test event sent, not yet recorded.
pub struct Attempted {
    prepared: Prepared,
    started_at: DateTime<Utc>,
    exchange: Exchange,
}

/// Checks the webhook and inserts the test event (already dispatched).
pub async fn prepare(client: &Client, webhook_id: i64, event_type: &str) -> Result<Prepared> {
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
    let event = client
        .query_one(INSERT_EVENT, &[&event_type, &hook.id])
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
        ordering_key: None,
    };
    Ok(Prepared {
        hook,
        webhook,
        delivery,
    })
}

impl Prepared {
    /// The request itself; no database connection is needed for it.
    pub async fn attempt(self, http: &Clients, timeout: Duration) -> Attempted {
        let (started_at, exchange) =
            single::attempt_once(http, &self.webhook, &self.delivery, timeout).await;
        Attempted {
            prepared: self,
            started_at,
            exchange,
        }
    }
}

impl Attempted {
    /// Records the delivery and its attempt; a failure to record is part of
    /// the result, since the request was made.
    pub async fn record(self, client: &Client) -> TestResult {
        let verdict = Verdict::of(&self.exchange);
        let recorded = record(
            client,
            &self.prepared.delivery,
            &self.prepared.webhook.url,
            self.started_at,
            &self.exchange,
            &verdict,
        )
        .await;
        match recorded {
            Ok(id) => self.result(verdict, Some(id), None),
            Err(e) => self.result(verdict, None, Some(e.to_string())),
        }
    }

    /// The result when no connection could be had to record it.
    pub fn unrecorded(self, why: String) -> TestResult {
        let verdict = Verdict::of(&self.exchange);
        self.result(verdict, None, Some(why))
    }

    fn result(
        self,
        verdict: Verdict,
        delivery_id: Option<i64>,
        record_error: Option<String>,
    ) -> TestResult {
        let Attempted {
            prepared,
            started_at,
            exchange,
        } = self;
        let status = match exchange.result {
            AttemptResult::Response { status, .. } => Some(status),
            AttemptResult::Transport(_) => None,
        };
        TestResult {
            webhook_id: prepared.hook.id,
            webhook: prepared.hook,
            url: prepared.webhook.url.clone(),
            event_id: prepared.delivery.event_id,
            event_type: prepared.delivery.event_type,
            delivery_id,
            record_error,
            started_at,
            latency_ms: log_millis(exchange.elapsed),
            status,
            status_line: status.map(status_line),
            error: verdict.error,
            response_body: exchange.response_body,
            success: verdict.failure.is_none(),
            failure: verdict.failure,
        }
    }
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

    fn state(&self) -> DeliveryState {
        if self.failure.is_none() {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
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
    url: &str,
    started_at: DateTime<Utc>,
    exchange: &Exchange,
    verdict: &Verdict,
) -> Result<i64> {
    let duration_ms = log_millis(exchange.elapsed);
    Ok(client
        .query_one(
            RECORD,
            &[
                &delivery.event_id,
                &delivery.webhook_id,
                &verdict.state().as_str(),
                &verdict.status,
                &verdict.error,
                &started_at,
                &duration_ms,
                &exchange.response_body,
                &url,
            ],
        )
        .await?
        .get(0))
}
