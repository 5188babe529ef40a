//! `outboxd stats`: the numbers an on-call admin asks for first, from SQL
//! alone (no running daemon needed): what waits, how old the oldest is, and
//! per webhook how the last hour went. The figures are
//! `outboxd_admin::stats`, which the console's overview shows too.

use anyhow::Result;

use super::connect;
use super::table::{self, Table};
use crate::config::StatsArgs;

pub async fn run(args: StatsArgs) -> Result<()> {
    let tenant = args
        .tenant
        .as_deref()
        .map(outboxd_admin::tenants::id)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let client = connect(&args.db).await?;
    let st = outboxd_admin::stats::stats_of(&client, tenant.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    let (events, oldest_event) = (st.events_pending, st.oldest_pending_event_age_seconds);
    let (pending, due, in_flight, oldest_delivery) = (
        st.deliveries_pending,
        st.deliveries_due,
        st.deliveries_in_flight,
        st.oldest_open_delivery_age_seconds,
    );

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
    for w in &st.webhooks {
        t.row(vec![
            w.id.to_string(),
            w.name.clone(),
            if w.enabled { "yes" } else { "no" }.into(),
            w.attempts_last_hour.to_string(),
            w.delivered_last_hour.to_string(),
            w.retried_last_hour.to_string(),
            w.failed_last_hour.to_string(),
            w.failure_ratio_last_hour
                .map(|x| format!("{:.0}%", x * 100.0))
                .unwrap_or_else(|| "-".into()),
            w.pending.to_string(),
        ]);
    }
    if t.is_empty() {
        println!("  (no webhooks)");
    } else {
        print!("{}", t.render());
    }
    let disabled: Vec<_> = st.webhooks.iter().filter(|w| !w.enabled).collect();
    if !disabled.is_empty() {
        println!();
        println!("Disabled webhooks:");
        for w in disabled {
            let when = w
                .disabled_at
                .map(|t| format!(" since {} UTC", table::time(t)))
                .unwrap_or_default();
            println!(
                "  {} {:?}{when}: {}",
                w.id,
                w.name,
                w.disabled_reason.as_deref().unwrap_or("no reason given")
            );
        }
    }
    Ok(())
}
