//! `outboxd webhooks`: list, show, add, edit, enable, disable,
//! rotate-secret, remove.
//!
//! The operations and their checks are `outboxd_admin::webhooks`, shared
//! with the console; this module turns flags into their input and their
//! results into tables, lines and JSON. A secret is printed only when it is
//! made (`add`, `rotate-secret`).

use anyhow::{anyhow, Result};
use outboxd_admin::webhooks::{self as ops, WebhookInput};

use super::table::{self, Table};
use super::{connect, parse, resolve_webhook};
use crate::config::{
    WebhookAddArgs, WebhookDisableArgs, WebhookEditArgs, WebhookListArgs, WebhookRefArgs,
    WebhookRotateArgs, WebhookRuleArgs, WebhookShowArgs, WebhooksCommand,
};

pub async fn run(command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::List(args) => list(args).await,
        WebhooksCommand::Show(args) => show(args).await,
        WebhooksCommand::Add(args) => add(args).await,
        WebhooksCommand::Edit(args) => edit(args).await,
        WebhooksCommand::Enable(args) => enable(args).await,
        WebhooksCommand::Disable(args) => disable(args).await,
        WebhooksCommand::RotateSecret(args) => rotate(args).await,
        WebhooksCommand::Remove(args) => remove(args).await,
    }
}

async fn list(args: WebhookListArgs) -> Result<()> {
    let tenant = args
        .tenant
        .as_deref()
        .map(outboxd_admin::tenants::id)
        .transpose()
        .map_err(|e| anyhow!("--tenant: {e}"))?;
    let args = args.list;
    let client = connect(&args.db).await?;
    let hooks = ops::list_of(&client, tenant.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hooks)?);
        return Ok(());
    }
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "URL",
        "EVENTS",
        "STATE",
        "LAST DELIVERY",
        "SUCCESS 1H",
        "PENDING",
        "RATE LIMIT",
        "ORDERING",
    ]);
    for w in hooks {
        let health = w.health().to_string();
        let last = match (w.last_attempt_age_seconds, &w.last_outcome) {
            (Some(ago), Some(outcome)) => format!("{} ago, {outcome}", table::age(ago)),
            _ => "never".to_owned(),
        };
        let success = match w.success_rate_last_hour {
            None => "-".to_owned(),
            Some(rate) => format!("{:.0}% of {}", 100.0 * rate, w.attempts_last_hour),
        };
        t.row(vec![
            w.id.to_string(),
            w.name,
            w.url,
            w.event_types.join(","),
            health,
            last,
            success,
            w.pending.to_string(),
            w.rate_limit
                .map_or_else(|| "-".to_owned(), |n| format!("{n}/s")),
            ordering(w.ordered, &w.ordering_policy),
        ]);
    }
    if t.is_empty() {
        println!("No webhooks yet. Add one: outboxd webhooks add --name NAME --url URL --events 'payment.*'");
    } else {
        print!("{}", t.render());
    }
    Ok(())
}

/// The ordering of a webhook in a word or two: `-`, `per key, skip`.
fn ordering(ordered: bool, policy: &str) -> String {
    if ordered {
        format!("per key, {policy}")
    } else {
        "-".to_owned()
    }
}

async fn show(args: WebhookShowArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let w = ops::get(&client, hook.id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
        return Ok(());
    }
    let headers: Vec<String> = w
        .headers
        .as_object()
        .map(|m| m.keys().map(|k| format!("{k}: {}", ops::HIDDEN)).collect())
        .unwrap_or_default();
    let lines = [
        ("id", w.id.to_string()),
        ("name", w.name.clone()),
        ("url", w.url.clone()),
        ("events", w.event_types.join(", ")),
        ("state", w.health().to_string()),
        (
            "tenant",
            w.tenant
                .clone()
                .unwrap_or_else(|| "- (a platform webhook)".into()),
        ),
        (
            "rate limit",
            w.rate_limit
                .map_or_else(|| "none".to_owned(), |n| format!("{n} requests/s")),
        ),
        ("ordered", w.ordered.to_string()),
        ("ordering policy", w.ordering_policy.clone()),
        (
            "headers",
            if headers.is_empty() {
                "-".to_owned()
            } else {
                headers.join(", ")
            },
        ),
        ("pending", w.pending.to_string()),
    ];
    for (k, v) in lines {
        println!("{:<16} {v}", format!("{k}:"));
    }
    Ok(())
}

/// Warns of patterns the catalog does not know: most often a typo. The
/// CLI only warns, for scripts that add a webhook before its types are
/// catalogued.
async fn warn_uncatalogued(client: &tokio_postgres::Client, patterns: &[String]) -> Result<()> {
    for p in ops::uncatalogued(client, patterns).await? {
        eprintln!(
            "warning: {p:?} matches no event type in the catalog; check the spelling (`outboxd event-types list`)"
        );
    }
    Ok(())
}

/// The tenants' rules as the daemon applies them.
fn rules_of(args: &WebhookRuleArgs) -> outboxd_admin::tenants::Rules {
    outboxd_admin::tenants::Rules {
        max_webhooks: args.max_webhooks_per_tenant as i64,
        allowed: args.tenant_allow_private_targets.0.clone(),
    }
}

/// A refusal of the shared checks, named by its flag.
fn flag_error(e: outboxd_admin::Error) -> anyhow::Error {
    match e {
        outboxd_admin::Error::Invalid { field, message } => {
            // The flags are named as the fields, but for the repeatable --header.
            let flag = match field {
                "headers" => "header".to_owned(),
                other => other.replace('_', "-"),
            };
            anyhow!("--{flag}: {message}")
        }
        other => anyhow!(other),
    }
}

/// `--rate-limit`: a number, or none.
fn rate_limit_flag(given: Option<&str>) -> Result<Option<Option<i64>>> {
    given
        .map(|r| outboxd_admin::validate::rate_limit_text(r).map(|n| n.map(i64::from)))
        .transpose()
        .map_err(flag_error)
}

/// The SSRF policy a webhook's URL is judged by for the warnings: a
/// tenant's as the deliverer judges it.
fn targets_for(tenant: Option<&str>, rules: &WebhookRuleArgs) -> outboxd_deliverer::TargetPolicy {
    match tenant {
        Some(_) => outboxd_deliverer::TargetPolicy {
            enabled: true,
            allowed: rules.tenant_allow_private_targets.0.clone(),
        },
        None => rules.allow_private_targets.policy(),
    }
}

async fn add(args: WebhookAddArgs) -> Result<()> {
    let input = WebhookInput {
        name: args.name.clone(),
        url: args.url.clone(),
        events: args.events.clone(),
        headers: parse::header_pairs(&args.headers).map_err(|e| anyhow!(e))?,
        tenant: args.tenant.clone(),
        rate_limit: rate_limit_flag(args.rate_limit.as_deref())?,
        ordered: Some(args.ordered),
        ordering_policy: Some(args.ordering_policy.clone()),
    };
    let rules = rules_of(&args.rules);
    let checked = input.check_with(&rules).map_err(flag_error)?;
    let client = connect(&args.db).await?;
    warn_uncatalogued(&client, &checked.event_types).await?;
    let targets = targets_for(checked.tenant.as_deref(), &args.rules);
    let created = ops::create_with(&client, checked, &targets, &rules)
        .await
        .map_err(flag_error)?;
    for warning in &created.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(());
    }
    println!(
        "Added webhook {} {:?}: {} for {}{}{}",
        created.id,
        created.webhook.name,
        created.webhook.url,
        created.webhook.event_types.join(", "),
        match created.webhook.rate_limit.flatten() {
            Some(n) => format!(", at most {n} requests/s"),
            None => String::new(),
        },
        match created.webhook.ordered {
            Some(true) => format!(
                ", ordered per key ({} on failure)",
                created.webhook.ordering_policy.as_deref().unwrap_or("skip")
            ),
            _ => String::new(),
        }
    );
    println!("Secret (shown only this once; the receiver verifies signatures with it):");
    println!("  {}", created.secret);
    Ok(())
}

async fn edit(args: WebhookEditArgs) -> Result<()> {
    let headers = if args.clear_headers {
        Some(Vec::new())
    } else if args.headers.is_empty() {
        None
    } else {
        Some(parse::header_pairs(&args.headers).map_err(|e| anyhow!(e))?)
    };
    let change = ops::WebhookChange {
        name: args.name.clone(),
        url: args.url.clone(),
        events: args.events.clone(),
        headers,
        tenant: args
            .tenant
            .as_deref()
            .map(|t| (!t.eq_ignore_ascii_case("none")).then(|| t.to_owned())),
        rate_limit: rate_limit_flag(args.rate_limit.as_deref())?,
        ordered: args.ordered,
        ordering_policy: args.ordering_policy.clone(),
    };
    let rules = rules_of(&args.rules);
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let events_given = change.events.is_some();
    let checked = ops::edited(&client, hook.id, change, &rules)
        .await
        .map_err(flag_error)?;
    if events_given {
        warn_uncatalogued(&client, &checked.event_types).await?;
    }
    ops::update(&client, hook.id, &checked, &rules)
        .await
        .map_err(flag_error)?;
    let targets = targets_for(checked.tenant.as_deref(), &args.rules);
    for warning in ops::warnings(&checked, &targets).await {
        eprintln!("warning: {warning}");
    }
    let w = ops::get(&client, hook.id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
        return Ok(());
    }
    println!(
        "Saved webhook {} {:?}: {} for {}; rate limit {}; ordering {}",
        w.id,
        w.name,
        w.url,
        w.event_types.join(", "),
        w.rate_limit
            .map_or_else(|| "none".to_owned(), |n| format!("{n} requests/s")),
        match ordering(w.ordered, &w.ordering_policy).as_str() {
            "-" => "none".to_owned(),
            o => o.to_owned(),
        },
    );
    Ok(())
}

async fn enable(args: WebhookRefArgs) -> Result<()> {
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let (hook, changed) = ops::enable(&client, hook.id).await?;
    if changed {
        println!("{hook} enabled: new events reach it again (earlier cancelled deliveries stay cancelled; `outboxd replay` sends them)");
    } else {
        println!("{hook} is enabled already");
    }
    Ok(())
}

async fn disable(args: WebhookDisableArgs) -> Result<()> {
    let mut client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    match ops::disable(&mut client, hook.id, &args.reason).await? {
        (hook, Some(cancelled)) => {
            println!("{hook} disabled; {cancelled} waiting deliveries cancelled")
        }
        (hook, None) => println!("{hook} is disabled already"),
    }
    Ok(())
}

async fn rotate(args: WebhookRotateArgs) -> Result<()> {
    let overlap = parse::duration_or_zero("--overlap", &args.overlap).map_err(|e| anyhow!(e))?;
    let client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let rotated = ops::rotate_secret(&client, hook.id, overlap).await?;
    println!("New secret for {hook} (shown only this once):");
    println!("  {}", rotated.secret);
    match rotated.previous_secret_expires_at {
        Some(t) => println!(
            "Until {} UTC requests carry two signatures, by the new and by the old secret; give the receiver the new secret before then.",
            table::time(t)
        ),
        None => println!("The old secret no longer signs: the receiver needs the new one now."),
    }
    Ok(())
}

async fn remove(args: WebhookRefArgs) -> Result<()> {
    let mut client = connect(&args.db).await?;
    let hook = resolve_webhook(&client, &args.webhook).await?;
    let (hook, cancelled) = ops::remove(&mut client, hook.id).await?;
    println!("{hook} removed; {cancelled} waiting deliveries cancelled (the delivery log keeps its attempts)");
    Ok(())
}
