//! `/api/deliveries` and `/api/stats`: the delivery log, one delivery with
//! its attempts and stored responses, replaying one, and the queue figures.

use axum::extract::{Path, RawQuery};
use axum::Json;
use outboxd_admin::deliveries::{self, Delivery, LogRow};
use outboxd_admin::replay::{self, ReplayedOne};
use outboxd_admin::stats::{self, Stats};
use outboxd_admin::validate;
use serde::Deserialize;
use tokio_postgres::Client;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_of, ApiResult};
use crate::caller::Caller;
use crate::http::{self, Db};
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(replay_one))
        .routes(routes!(get_stats))
}

/// The filters of the delivery log. The handler reads the raw query so a
/// bad value is answered with the field and what it accepts; this type
/// only describes the parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LogQuery {
    webhook_id: Option<i64>,
    #[param(inline)]
    state: Option<StateName>,
    event_type: Option<String>,
    /// 1h, 7d or an RFC 3339 time.
    since: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: Option<i64>,
    /// Only deliveries to this tenant's webhooks (a portal session: always its own).
    tenant: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum StateName {
    Pending,
    InFlight,
    Delivered,
    Failed,
    Cancelled,
}

/// The delivery-log filter of a query string (the API's and the console's).
/// A tenant's filter is its own tenant, whatever the query says; the
/// admin may filter by `tenant`.
pub(crate) async fn log_filter(
    client: &Client,
    query: &[(String, String)],
    caller: &Caller,
) -> Result<deliveries::LogFilter, outboxd_admin::Error> {
    let webhook_id = match http::non_blank(query, "webhook_id") {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            outboxd_admin::Error::invalid("webhook_id", format!("{s:?} is not a webhook id"))
        })?),
        None => None,
    };
    let since = match http::non_blank(query, "since") {
        Some(s) => Some(outboxd_admin::since_time(client, &validate::since(s)?).await?),
        None => None,
    };
    let limit = match http::non_blank(query, "limit") {
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                outboxd_admin::Error::invalid(
                    "limit",
                    format!("{s:?} is not a whole number from 1 to 1000"),
                )
            })?,
        None => 50,
    };
    Ok(deliveries::LogFilter {
        webhook_id,
        state: http::non_blank(query, "state")
            .map(deliveries::state)
            .transpose()?,
        event_type: http::non_blank(query, "event_type").map(str::to_owned),
        since,
        limit,
        tenant: match caller.tenant() {
            Some(t) => Some(t.to_owned()),
            None => http::non_blank(query, "tenant").map(str::to_owned),
        },
    })
}

/// The delivery log (attempts), newest first.
#[utoipa::path(get, path = "/api/deliveries", operation_id = "listDeliveries",
    params(LogQuery),
    responses((status = 200, description = "Attempts, newest first", body = [LogRow])))]
async fn list(caller: Caller, db: Db, RawQuery(query): RawQuery) -> ApiResult<Json<Vec<LogRow>>> {
    let query = http::pairs(query.unwrap_or_default().as_bytes());
    let filter = log_filter(&db, &query, &caller).await?;
    Ok(Json(deliveries::log(&db, &filter).await?))
}

/// One delivery with every attempt and stored response.
#[utoipa::path(get, path = "/api/deliveries/{id}", operation_id = "getDelivery",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "The delivery", body = Delivery)))]
async fn get(caller: Caller, db: Db, Path(id): Path<String>) -> ApiResult<Json<Delivery>> {
    let id = id_of(&id)?;
    caller.owns_delivery(&db, id).await?;
    Ok(Json(deliveries::show(&db, id).await?))
}

/// Put one delivery back to pending with a fresh attempt budget.
#[utoipa::path(post, path = "/api/deliveries/{id}/replay", operation_id = "replayDelivery",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "Replayed, or why not", body = ReplayedOne)))]
async fn replay_one(
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
) -> ApiResult<Json<ReplayedOne>> {
    let id = id_of(&id)?;
    caller.owns_delivery(&db, id).await?;
    Ok(Json(replay::delivery(&db, id).await?))
}

/// The stats' one parameter (the handler reads the raw query).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct StatsQuery {
    /// Only this tenant's webhooks and events.
    tenant: Option<String>,
}

/// Queue depth, lag and the last hour per webhook.
#[utoipa::path(get, path = "/api/stats", operation_id = "getStats", params(StatsQuery),
    responses((status = 200, description = "The figures", body = Stats)))]
async fn get_stats(caller: Caller, db: Db, RawQuery(query): RawQuery) -> ApiResult<Json<Stats>> {
    caller.admin_only()?;
    let query = http::pairs(query.unwrap_or_default().as_bytes());
    let tenant = http::non_blank(&query, "tenant");
    if let Some(t) = tenant {
        outboxd_admin::tenants::id(t)?;
    }
    Ok(Json(stats::stats_of(&db, tenant).await?))
}
