//! `outboxd stats`: the numbers an on-call admin asks for first, from SQL
//! alone (no running daemon needed): what waits, how old the oldest is, and
//! per webhook how the last hour went. Each figure is answered from an
//! index, as the daemon's own sampler does, so it is cheap on a big log.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::table::{self, Table};
use super::{connect, PgResult};
use crate::config::StatsArgs;

const QUEUE: &str = "
SELECT (SELECT count(*) FROM outbox.events WHERE dispatched_at IS NULL),
       (SELECT extract(epoch FROM now() - created_at)::float8
          FROM outbox.events WHERE dispatched_at IS NULL ORDER BY id LIMIT 1),
       (SELECT count(*) FROM outbox.deliveries WHERE state = 'pending'),
       (SELECT count(*) FROM outbox.deliveries WHERE state = 'pending' AND next_attempt_at <= now()),
       (SELECT count(*) FROM outbox.deliveries WHERE state = 'in_flight'),
       (SELECT extract(epoch FROM now() - min(created_at))::float8
          FROM outbox.deliveries WHERE state IN ('pending', 'in_flight'))";

/// "Failures" are attempts that did not deliver (retries and final failures).
const PER_WEBHOOK: &str = "
SELECT w.id, w.name, w.enabled, h.attempts, h.delivered, h.retried, h.failed,
       (SELECT count(*) FROM outbox.deliveries d
         WHERE d.webhook_id = w.id AND d.state IN ('pending', 'in_flight')),
       w.disabled_reason, w.disabled_at
  FROM outbox.webhooks w
  LEFT JOIN LATERAL (
        SELECT count(*) AS attempts,
               count(*) FILTER (WHERE a.outcome = 'delivered') AS delivered,
               count(*) FILTER (WHERE a.outcome = 'retry') AS retried,
               count(*) FILTER (WHERE a.outcome = 'failed') AS failed
          FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id AND a.started_at > now() - interval '1 hour') h ON true
 ORDER BY w.id";

pub async fn run(args: StatsArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let q = client.query_one(QUEUE, &[]).await.pg()?;
    let hooks = client.query(PER_WEBHOOK, &[]).await.pg()?;
    let (events, oldest_event): (i64, Option<f64>) = (q.get(0), q.get(1));
    let (pending, due, in_flight, oldest_delivery): (i64, i64, i64, Option<f64>) =
        (q.get(2), q.get(3), q.get(4), q.get(5));
    let ratio = |attempts: i64, delivered: i64| {
        (attempts > 0).then(|| (attempts - delivered) as f64 / attempts as f64)
    };

    if args.json {
        let out = json!({
            "events_pending": events,
            "oldest_pending_event_age_seconds": oldest_event,
            "deliveries_pending": pending,
            "deliveries_due": due,
            "deliveries_in_flight": in_flight,
            "oldest_open_delivery_age_seconds": oldest_delivery,
            "webhooks": hooks.iter().map(|r| {
                let (attempts, delivered): (i64, i64) = (r.get(3), r.get(4));
                json!({
                    "id": r.get::<_, i64>(0),
                    "name": r.get::<_, String>(1),
                    "enabled": r.get::<_, bool>(2),
                    "attempts_last_hour": attempts,
                    "delivered_last_hour": delivered,
                    "retried_last_hour": r.get::<_, i64>(5),
                    "failed_last_hour": r.get::<_, i64>(6),
                    "failure_ratio_last_hour": ratio(attempts, delivered),
                    "pending": r.get::<_, i64>(7),
                    "disabled_reason": r.get::<_, Option<String>>(8),
                    "disabled_at": r.get::<_, Option<DateTime<Utc>>>(9).map(table::rfc3339),
                })
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    let age = |a: Option<f64>| a.map(table::age).unwrap_or_else(|| "-".into());
    println!(
        "Events waiting for fan-out  {events:>7}   oldest {}",
        age(oldest_event)
    );
    println!(
        "Deliveries pending          {pending:>7}   {due} due now, {in_flight} in flight; oldest open {}",
        age(oldest_delivery)
    );
    println!();
    println!("Last hour, per webhook:");
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "ENABLED",
        "ATTEMPTS",
        "DELIVERED",
        "RETRIED",
        "FAILED",
        "FAILURE",
        "PENDING",
    ]);
    for r in &hooks {
        let (attempts, delivered): (i64, i64) = (r.get(3), r.get(4));
        t.row(vec![
            r.get::<_, i64>(0).to_string(),
            r.get(1),
            if r.get(2) { "yes" } else { "no" }.into(),
            attempts.to_string(),
            delivered.to_string(),
            r.get::<_, i64>(5).to_string(),
            r.get::<_, i64>(6).to_string(),
            ratio(attempts, delivered)
                .map(|x| format!("{:.0}%", x * 100.0))
                .unwrap_or_else(|| "-".into()),
            r.get::<_, i64>(7).to_string(),
        ]);
    }
    if t.is_empty() {
        println!("  (no webhooks)");
    } else {
        print!("{}", t.render());
    }
    let disabled: Vec<_> = hooks.iter().filter(|r| !r.get::<_, bool>(2)).collect();
    if !disabled.is_empty() {
        println!();
        println!("Disabled webhooks:");
        for r in disabled {
            let when = r
                .get::<_, Option<DateTime<Utc>>>(9)
                .map(|t| format!(" since {} UTC", table::time(t)))
                .unwrap_or_default();
            println!(
                "  {} {:?}{when}: {}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, Option<String>>(8)
                    .unwrap_or_else(|| "no reason given".into())
            );
        }
    }
    Ok(())
}
