//! The delivery log (filtered by webhook, state, event type and time) and
//! one delivery: its payload, the request headers its next attempt sends,
//! every attempt with the stored response, and Replay.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use outboxd_admin::deliveries::{self, Delivery};
use outboxd_admin::format::time;
use outboxd_admin::{replay, webhooks, Error};
use outboxd_core::DeliveryState;
use tokio_postgres::Client;

use super::{id_of, render, status_or_error, Ctx, Form, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/deliveries", get(log))
        .route("/deliveries/{id}", get(one))
        .route("/deliveries/{id}/replay", post(replay_one))
}

async fn log(ctx: Ctx, db: Db) -> PageResult {
    let filter = crate::api::log_filter(&db, &ctx.query, &ctx.caller).await;
    let (filter, error) = match filter {
        Ok(f) => (f, None),
        Err(e @ Error::Invalid { .. }) => (
            deliveries::LogFilter {
                limit: 100,
                ..Default::default()
            },
            Some(e.to_string()),
        ),
        Err(e) => return Err(e.into()),
    };
    // The page shows more than the API's default.
    let filter = deliveries::LogFilter {
        limit: if filter.limit == 50 {
            100
        } else {
            filter.limit
        },
        ..filter
    };
    let (rows, error) = match deliveries::log(&db, &filter).await {
        Ok(rows) => (rows, error),
        Err(e @ Error::Invalid { .. }) => (Vec::new(), Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let hooks = webhooks::list_of(&db, filter.tenant.as_deref()).await?;
    let chosen_hook = ctx.q("webhook_id");
    let chosen_state = ctx.q("state");
    let event_type = ctx.q("event_type");
    let since = ctx.q("since");
    let mut l = ctx.l;
    l.error = error;
    Ok(render(
        StatusCode::OK,
        &DeliveriesPage {
            l,
            webhooks: hooks
                .iter()
                .map(|w| Choice {
                    value: w.id.to_string(),
                    label: format!("{} #{}", w.name, w.id),
                    selected: w.id.to_string() == chosen_hook,
                })
                .collect(),
            states: DeliveryState::ALL
                .iter()
                .map(|s| Choice {
                    value: s.to_string(),
                    label: s.to_string(),
                    selected: s.as_str() == chosen_state,
                })
                .collect(),
            event_type,
            since,
            rows: rows.into_iter().map(LogLine::from).collect(),
        },
    ))
}

async fn one(ctx: Ctx, db: Db, Path(id): Path<String>) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_delivery(&db, id).await?;
    delivery_page(ctx, &db, id).await
}

async fn delivery_page(ctx: Ctx, client: &Client, id: i64) -> PageResult {
    let d = deliveries::show(client, id).await?;
    let headers = request_headers(client, &d).await;
    Ok(render(
        StatusCode::OK,
        &DeliveryPage::new(ctx.l, d, headers),
    ))
}

async fn replay_one(ctx: Ctx, db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_delivery(&db, id).await?;
    let r = replay::delivery(&db, id).await?;
    let note = if r.replayed == 0 {
        format!(
            "Delivery {id} is {} already; nothing to replay.",
            r.previous_state
        )
    } else {
        format!("Delivery {id} replayed: pending again with a fresh attempt budget.")
    };
    delivery_page(ctx.notice(note), &db, id).await
}

/// Header names whose values are credentials, shown redacted.
fn is_sensitive(name: &str) -> bool {
    [
        "auth",
        "token",
        "secret",
        "key",
        "cookie",
        "password",
        "signature",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The headers the next attempt of `d` sends, built by the deliverer's own
/// request builder, with the signature, the webhook's custom headers and
/// anything named like a credential redacted.
async fn request_headers(client: &Client, d: &Delivery) -> Vec<(String, String)> {
    let Ok(Some(webhook)) = outboxd_db::webhooks::load_one(client, d.webhook_id).await else {
        return Vec::new();
    };
    let claimed = outboxd_db::Claimed {
        delivery_id: d.id,
        lease: 0,
        attempt: d.attempts + 1,
        event_id: d.event_id,
        webhook_id: d.webhook_id,
        event_type: d.event_type.clone().unwrap_or_default(),
        payload: d
            .payload
            .as_ref()
            .map(|p| std::sync::Arc::from(p.text()))
            .unwrap_or_else(|| "null".into()),
        created_at: d.event_created_at.unwrap_or(d.created_at),
        ordering_key: None,
    };
    let ts = d
        .attempt_log
        .last()
        .map(|a| a.started_at)
        .unwrap_or(d.created_at)
        .timestamp();
    match outboxd_deliverer::request::build(&webhook, &claimed, ts) {
        Ok(req) => req
            .headers()
            .iter()
            .map(|(n, v)| {
                let name = n.as_str().to_owned();
                let custom = webhook.headers.iter().any(|(n, _)| *n == name);
                let value = if custom || is_sensitive(&name) {
                    "(redacted)".to_owned()
                } else {
                    v.to_str().unwrap_or("(binary)").to_owned()
                };
                (name, value)
            })
            .collect(),
        Err(e) => vec![("(not buildable)".into(), e.to_string())],
    }
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    l: Layout,
    webhooks: Vec<Choice>,
    states: Vec<Choice>,
    event_type: String,
    since: String,
    rows: Vec<LogLine>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct LogLine {
    time: String,
    delivery_id: i64,
    webhook: String,
    event_type: String,
    attempt: i32,
    status: String,
    ms: String,
    outcome: String,
    state: String,
}

impl From<deliveries::LogRow> for LogLine {
    fn from(r: deliveries::LogRow) -> LogLine {
        let mut event_type = r.event_type.clone().unwrap_or_else(|| "?".into());
        if r.is_test {
            event_type.push_str(" (test)");
        }
        LogLine {
            time: time(r.started_at),
            delivery_id: r.delivery_id,
            webhook: match &r.webhook_name {
                Some(n) => format!("{n} #{}", r.webhook_id),
                None => format!("#{} (removed)", r.webhook_id),
            },
            event_type,
            attempt: r.attempt,
            status: status_or_error(r.status_code, r.error.as_deref()),
            ms: format!("{:.1}", r.duration_ms),
            outcome: r.outcome,
            state: r
                .delivery_state
                .map_or_else(|| "-".into(), |s| s.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    l: Layout,
    id: i64,
    state: String,
    webhook: String,
    event: String,
    attempts: i32,
    next_attempt: String,
    last_error: String,
    payload: String,
    headers: Vec<(String, String)>,
    attempt_log: Vec<AttemptView>,
}

struct AttemptView {
    attempt: i32,
    time: String,
    ms: String,
    status: String,
    outcome: String,
    body: String,
}

impl DeliveryPage {
    fn new(l: Layout, d: Delivery, headers: Vec<(String, String)>) -> DeliveryPage {
        DeliveryPage {
            l,
            id: d.id,
            webhook: match (&d.webhook_name, &d.webhook_url) {
                (Some(n), Some(u)) => format!("{n} #{} ({u})", d.webhook_id),
                _ => format!("#{} (removed)", d.webhook_id),
            },
            event: format!(
                "{} {}{}, created {} UTC",
                d.event_id,
                d.event_type.as_deref().unwrap_or("?"),
                if d.is_test { " (test)" } else { "" },
                d.event_created_at.map(time).unwrap_or_else(|| "?".into())
            ),
            attempts: d.total_attempts,
            next_attempt: if d.state == DeliveryState::Pending {
                format!("{} UTC", time(d.next_attempt_at))
            } else {
                "-".into()
            },
            last_error: d.last_error.clone().unwrap_or_else(|| "-".into()),
            payload: d.payload.as_ref().map(|p| p.pretty()).unwrap_or_default(),
            headers,
            attempt_log: d
                .attempt_log
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    time: time(a.started_at),
                    ms: format!("{:.1}", a.duration_ms),
                    status: status_or_error(a.status_code, a.error.as_deref()),
                    outcome: a.outcome.clone(),
                    body: a
                        .response_body
                        .clone()
                        .unwrap_or_else(|| "(no response body)".into()),
                })
                .collect(),
            state: d.state.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_by_name() {
        for name in [
            "authorization",
            "x-api-key",
            "webhook-signature",
            "x-auth-token",
            "cookie",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "webhook-id", "x-tenant"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }
}
