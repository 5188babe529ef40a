//! The halted ordering keys: each key of an ordered webhook under the
//! `halt` policy whose delivery failed for good, with what waits behind
//! it, and the two ways on: Replay (the failed delivery is sent again
//! first, through the delivery's own replay form) or Skip (after a
//! confirmation, since the failed event then never goes in order). The
//! portal shows a tenant its own keys only.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use outboxd_admin::format::time;
use outboxd_admin::keys::{self, HaltedKey};
use outboxd_admin::{webhooks, Error};
use tokio_postgres::Client;

use super::{id_of, render, status_or_error, Ctx, Form, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/halted-keys", get(list))
        .route("/halted-keys/{id}/skip", get(confirm_skip).post(skip))
}

async fn list(ctx: Ctx, db: Db) -> PageResult {
    let (webhook, error) = match crate::api::webhook_filter(&ctx.query) {
        Ok(w) => (w, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut ctx = ctx;
    ctx.l.error = error;
    list_page(ctx, &db, webhook).await
}

async fn list_page(ctx: Ctx, client: &Client, webhook: Option<i64>) -> PageResult {
    let tenant = ctx.caller.tenant();
    let rows = keys::halted(client, webhook, tenant).await?;
    let hooks = webhooks::list_of(client, tenant).await?;
    Ok(render(
        StatusCode::OK,
        &HaltedKeysPage {
            l: ctx.l,
            webhooks: hooks
                .iter()
                .filter(|w| w.ordered)
                .map(|w| Choice {
                    value: w.id.to_string(),
                    label: format!("{} #{}", w.name, w.id),
                    selected: Some(w.id) == webhook,
                })
                .collect(),
            rows: rows.into_iter().map(KeyRow::from).collect(),
        },
    ))
}

/// The halted key `id` halts, as the caller may see it; NotFound otherwise.
async fn halted_key(ctx: &Ctx, client: &Client, id: i64) -> Result<HaltedKey, Error> {
    ctx.caller.owns_delivery(client, id).await?;
    keys::halted(client, None, ctx.caller.tenant())
        .await?
        .into_iter()
        .find(|k| k.delivery_id == id)
        .ok_or_else(|| Error::NotFound(format!("delivery {id} halts no key")))
}

async fn confirm_skip(ctx: Ctx, db: Db, Path(id): Path<String>) -> PageResult {
    let id = id_of(&id)?;
    let k = halted_key(&ctx, &db, id).await?;
    Ok(render(
        StatusCode::OK,
        &ConfirmSkip {
            l: ctx.l,
            row: KeyRow::from(k),
        },
    ))
}

async fn skip(ctx: Ctx, db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    let r = crate::api::skip_for(&ctx.caller, &db, id).await?;
    let note = if r.promoted > 0 {
        format!("Delivery {id} skipped (it stays failed); the next delivery of its key is pending.")
    } else {
        format!("Delivery {id} skipped (it stays failed); nothing of its key was waiting.")
    };
    list_page(ctx.notice(note), &db, None).await
}

#[derive(Template)]
#[template(path = "halted_keys.html")]
struct HaltedKeysPage {
    l: Layout,
    webhooks: Vec<Choice>,
    rows: Vec<KeyRow>,
}

#[derive(Template)]
#[template(path = "confirm_skip.html")]
struct ConfirmSkip {
    l: Layout,
    row: KeyRow,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

struct KeyRow {
    ordering_key: String,
    webhook_id: i64,
    webhook: String,
    tenant: Option<String>,
    delivery_id: i64,
    event: String,
    failed_at: String,
    status: String,
    waiting: i64,
}

impl From<HaltedKey> for KeyRow {
    fn from(k: HaltedKey) -> KeyRow {
        KeyRow {
            webhook: format!("{} #{}", k.webhook_name, k.webhook_id),
            webhook_id: k.webhook_id,
            tenant: k.tenant,
            delivery_id: k.delivery_id,
            event: format!("{} {}", k.event_id, k.event_type.as_deref().unwrap_or("?")),
            failed_at: time(k.failed_at),
            status: status_or_error(k.last_status, k.last_error.as_deref()),
            waiting: k.waiting,
            ordering_key: k.ordering_key,
        }
    }
}
