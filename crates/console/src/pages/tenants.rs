//! The admin's tenants screen: each tenant with webhooks, how many are
//! enabled and failing and how many deliveries wait, links to its
//! webhooks and delivery log, and a portal link to hand to its customer.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use outboxd_admin::tenants::{self, TenantSummary};
use outboxd_admin::{portal, Error};

use super::{render, Ctx, Form, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list))
        .route("/tenants/{tenant}/portal-link", post(link))
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct Tenants {
    l: Layout,
    rows: Vec<TenantSummary>,
    link: Option<(String, String)>,
}

async fn list(ctx: Ctx, db: Db) -> PageResult {
    ctx.caller.admin_only()?;
    let rows = tenants::list(&db).await?;
    Ok(render(
        StatusCode::OK,
        &Tenants {
            l: ctx.l,
            rows,
            link: None,
        },
    ))
}

async fn link(
    State(state): State<AppState>,
    ctx: Ctx,
    db: Db,
    Path(tenant): Path<String>,
    _: Form,
) -> PageResult {
    ctx.caller.admin_only()?;
    let keys = state.link_keys.as_ref().ok_or_else(|| {
        Error::Conflict(
            "portal links need a key: set OUTBOXD_ADMIN_TOKEN or OUTBOXD_PORTAL_KEYS".into(),
        )
    })?;
    let url = portal::link(keys, &state.base_url, &tenant, portal::DEFAULT_TTL)?;
    tracing::info!(tenant = %tenant, "portal link made in the console");
    let rows = tenants::list(&db).await?;
    Ok(render(
        StatusCode::OK,
        &Tenants {
            l: ctx.l,
            rows,
            link: Some((tenant, url)),
        },
    ))
}
