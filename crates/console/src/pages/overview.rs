//! The overview: queue depth, lag, the last hour's failure ratio, and the
//! webhooks that are disabled and why.

use askama::Template;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use outboxd_admin::format::{age, time};
use outboxd_admin::stats;

use super::{percent, render, Ctx, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/", get(overview))
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    l: Layout,
    pending: i64,
    events_pending: i64,
    oldest_pending: String,
    attempts_last_hour: i64,
    failure_ratio: String,
    disabled: Vec<DisabledRow>,
}

struct DisabledRow {
    id: i64,
    name: String,
    since: String,
    reason: String,
}

async fn overview(ctx: Ctx, db: Db) -> PageResult {
    if ctx.caller.tenant().is_some() {
        return Ok(crate::http::redirect("/webhooks"));
    }
    let s = stats::stats(&db).await?;
    let disabled = s
        .webhooks
        .iter()
        .filter(|w| !w.enabled)
        .map(|w| DisabledRow {
            id: w.id,
            name: w.name.clone(),
            since: w.disabled_at.map(time).unwrap_or_default(),
            reason: w
                .disabled_reason
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &Overview {
            l: ctx.l,
            pending: s.deliveries_pending,
            events_pending: s.events_pending,
            oldest_pending: s
                .oldest_pending_event_age_seconds
                .map(age)
                .unwrap_or_else(|| "-".into()),
            attempts_last_hour: s.attempts_last_hour,
            failure_ratio: percent(s.failure_ratio_last_hour),
            disabled,
        },
    ))
}
