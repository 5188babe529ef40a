//! `outboxd test-event`: one signed request to one webhook, sent now from
//! this process (not through the daemon), so an admin sees at once whether
//! the endpoint works and why not.
//!
//! The request is built and sent by the deliverer's own code, through the
//! same SSRF guard, so it is exactly what the daemon would send. It is
//! recorded like any delivery (event, delivery in its final state, attempt),
//! marked as a test; the event is inserted already dispatched, so no daemon
//! fans it out and sends it a second time.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use outboxd_core::outcome::{describe_status, error_text, AttemptResult};
use outboxd_deliverer::send::Exchange;
use outboxd_deliverer::{build_client, single, TargetPolicy};
use outboxd_poller::Claimed;

use super::{connect, parse, resolve_webhook, PgResult};
use crate::config::TestEventArgs;

/// Lines of the response body printed; the log keeps the first 4 KiB.
const BODY_LINES: usize = 10;

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

pub async fn run(args: TestEventArgs) -> Result<()> {
    let timeout = parse::duration("--timeout", &args.timeout).map_err(|e| anyhow!(e))?;
    parse::event_type(&args.event_type).map_err(|e| anyhow!(e))?;
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    if !hook.enabled {
        bail!(
            "{hook} is disabled: enable it first (`outboxd webhooks enable {}`)",
            hook.id
        );
    }
    let webhook = outboxd_poller::webhooks::load_one(&client, hook.id)
        .await
        .with_context(|| format!("loading {hook}"))?
        .ok_or_else(|| anyhow!("{hook} was removed just now"))?;
    let payload: serde_json::Value = client
        .query_opt(EXAMPLE, &[&args.event_type])
        .await
        .pg()?
        .map(|r| r.get(0))
        .unwrap_or_else(|| serde_json::json!({"test": true}));
    let event = client
        .query_one(INSERT_EVENT, &[&args.event_type, &payload, &hook.id])
        .await
        .pg()?;
    let event_id: i64 = event.get(0);
    let delivery = Claimed {
        delivery_id: 0,
        lease: 0,
        attempt: 1,
        event_id,
        webhook_id: hook.id,
        event_type: args.event_type.clone(),
        payload: event.get(1),
        created_at: event.get(2),
    };

    let http = build_client(
        Duration::from_secs(5),
        1,
        TargetPolicy {
            enabled: true,
            allowed: args.allow_private_targets.0.clone(),
        },
    )
    .context("setting up the HTTP client")?;
    println!(
        "POST {} ({hook}, event {event_id} {}, test)",
        webhook.url, args.event_type
    );
    let (started_at, exchange) = single::attempt_once(&http, &webhook, &delivery, timeout).await;
    let verdict = Verdict::of(&exchange);
    print_exchange(&exchange, &verdict);

    let recorded = record(&client, &delivery, started_at, &exchange, &verdict).await;
    match (&recorded, &verdict.failure) {
        (Ok(id), None) => {
            println!("Delivered. Recorded as delivery {id} (`outboxd deliveries show {id}`).")
        }
        (Ok(id), Some(_)) => {
            println!("Recorded as delivery {id} (`outboxd deliveries show {id}`).")
        }
        (Err(_), _) => {}
    }
    let delivery_id = recorded.context("the request was made but could not be recorded")?;
    if let Some(reason) = verdict.failure {
        bail!("test event not delivered (delivery {delivery_id}): {reason}");
    }
    Ok(())
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

fn status_line(status: u16) -> String {
    match hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

fn print_exchange(exchange: &Exchange, verdict: &Verdict) {
    let ms = exchange.elapsed.as_secs_f64() * 1000.0;
    match &exchange.result {
        AttemptResult::Response { status, .. } => {
            println!("{} in {ms:.1} ms", status_line(*status));
        }
        AttemptResult::Transport(_) => {
            println!(
                "No response after {ms:.1} ms: {}",
                verdict.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    if let Some(body) = exchange.response_body.as_deref() {
        println!("Response body:");
        let lines: Vec<&str> = body.lines().collect();
        for line in lines.iter().take(BODY_LINES) {
            println!("  {}", super::table::cut(line, 200));
        }
        if lines.len() > BODY_LINES {
            println!("  … ({} more lines)", lines.len() - BODY_LINES);
        }
    }
}

async fn record(
    client: &tokio_postgres::Client,
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
        .await
        .pg()?
        .get(0))
}
