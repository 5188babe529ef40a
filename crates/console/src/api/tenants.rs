//! `/api/tenants`: the tenants with webhooks, and portal links that sign a
//! tenant's customer in to its portal. Both are the platform's: a portal
//! session gets 403.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use outboxd_admin::portal;
use outboxd_admin::tenants::{self, TenantSummary};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiResult, OptBody};
use crate::caller::Caller;
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(portal_link))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct LinkBody {
    /// How long the link may be opened: 15m, 1h (the default), up to 7d.
    ttl: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Link {
    /// Opens the tenant's portal once, until it expires.
    url: String,
}

/// Every tenant that has a webhook, with its webhooks' health.
#[utoipa::path(get, path = "/api/tenants", operation_id = "listTenants",
    responses((status = 200, description = "The tenants", body = [TenantSummary])))]
async fn list(caller: Caller, db: Db) -> ApiResult<Json<Vec<TenantSummary>>> {
    caller.admin_only()?;
    Ok(Json(tenants::list(&db).await?))
}

/// A link that signs a browser in to the tenant's portal.
#[utoipa::path(post, path = "/api/tenants/{tenant}/portal-link", operation_id = "portalLink",
    params(("tenant" = String, Path, description = "lowercase letters, digits and _ . -, at most 64")),
    request_body(content = Option<LinkBody>),
    responses((status = 200, description = "The link", body = Link)))]
async fn portal_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(tenant): Path<String>,
    OptBody(b): OptBody<LinkBody>,
) -> ApiResult<Json<Link>> {
    caller.admin_only()?;
    let ttl = match b.ttl.as_deref().map(str::trim) {
        None | Some("") => portal::DEFAULT_TTL,
        Some(s) => humantime::parse_duration(s).map_err(|_| {
            outboxd_admin::Error::invalid(
                "ttl",
                format!("{s:?} is not a duration; use 15m, 1h or 1d"),
            )
        })?,
    };
    let Some(keys) = &state.link_keys else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "portal links need a key: set OUTBOXD_ADMIN_TOKEN or OUTBOXD_PORTAL_KEYS",
        ));
    };
    let url = portal::link(keys, &state.base_url, &tenant, ttl)?;
    tracing::info!(tenant = %tenant, ttl = %humantime::format_duration(ttl), "portal link made");
    Ok(Json(Link { url }))
}
