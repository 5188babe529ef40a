//! `outboxd test-event`: one signed request to one webhook, sent now from
//! this process (not through the daemon), printed with its status, latency
//! and response. Sending and recording are `outboxd_admin::test_event`, the
//! same code as the console's "Send Test Event".

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use outboxd_admin::test_event::TestResult;
use outboxd_deliverer::build_client;

use super::{connect, parse, resolve_webhook};
use crate::config::TestEventArgs;

/// Lines of the response body printed; the log keeps the first 4 KiB.
const BODY_LINES: usize = 10;

pub async fn run(args: TestEventArgs) -> Result<()> {
    let timeout = parse::duration("--timeout", &args.timeout).map_err(|e| anyhow!(e))?;
    outboxd_admin::validate::event_type(&args.event_type)?;
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let http = build_client(
        Duration::from_secs(5),
        1,
        args.allow_private_targets.policy(),
    )
    .context("setting up the HTTP client")?;
    // This process's own connection, idle while the request is out.
    let prepared = outboxd_admin::test_event::prepare(&client, hook.id, &args.event_type).await?;
    let r = prepared.attempt(&http, timeout).await.record(&client).await;
    println!(
        "POST {} ({}, event {} {}, test)",
        r.url, r.webhook, r.event_id, r.event_type
    );
    print_exchange(&r);
    let Some(delivery_id) = r.delivery_id else {
        bail!(
            "the request was made but could not be recorded: {}",
            r.record_error.unwrap_or_default()
        );
    };
    if let Some(reason) = r.failure {
        println!("Recorded as delivery {delivery_id} (`outboxd deliveries show {delivery_id}`).");
        bail!("test event not delivered (delivery {delivery_id}): {reason}");
    }
    println!(
        "Delivered. Recorded as delivery {delivery_id} (`outboxd deliveries show {delivery_id}`)."
    );
    Ok(())
}

fn print_exchange(r: &TestResult) {
    let ms = r.latency_ms;
    match &r.status_line {
        Some(line) => println!("{line} in {ms:.1} ms"),
        None => println!(
            "No response after {ms:.1} ms: {}",
            r.error.as_deref().unwrap_or("unknown error")
        ),
    }
    if let Some(body) = r.response_body.as_deref() {
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
