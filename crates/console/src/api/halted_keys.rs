//! `/api/halted-keys`: the ordering keys halted by a finally failed
//! delivery (ordered webhooks under the `halt` policy), and skipping one.
//! Replaying the failed delivery instead is `POST /api/deliveries/{id}/replay`.
//! The queries are `outboxd_admin::keys`, shared with the CLI and the pages;
//! a tenant's session sees and skips its own tenant's keys only.

use axum::extract::{Path, RawQuery};
use axum::Json;
use outboxd_admin::keys::{self, HaltedKey, Skipped};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_of, ApiResult, ErrorBody};
use crate::caller::Caller;
use crate::http::{self, Db};
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(skip))
}

/// The list's one filter. The handler reads the raw query so a bad value
/// is answered with the field; this type only describes the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct HaltedQuery {
    /// Only this webhook's keys.
    webhook_id: Option<i64>,
}

/// The `webhook_id` filter of a query string (the API's and the page's).
pub(crate) fn webhook_filter(
    query: &[(String, String)],
) -> Result<Option<i64>, outboxd_admin::Error> {
    http::non_blank(query, "webhook_id")
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                outboxd_admin::Error::invalid("webhook_id", format!("{s:?} is not a webhook id"))
            })
        })
        .transpose()
}

/// The caller's halted keys, the longest halted first (at most 1,000).
#[utoipa::path(get, path = "/api/halted-keys", operation_id = "listHaltedKeys",
    params(HaltedQuery),
    responses((status = 200, description = "Halted keys, the longest halted first", body = [HaltedKey])))]
async fn list(
    caller: Caller,
    db: Db,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<HaltedKey>>> {
    let query = http::pairs(query.unwrap_or_default().as_bytes());
    let webhook = webhook_filter(&query)?;
    Ok(Json(keys::halted(&db, webhook, caller.tenant()).await?))
}

/// Skips what `delivery_id` halts, for the caller. A delivery the caller
/// may not see (none by that id, or another tenant's) is NotFound; one it
/// sees that halts nothing is a Conflict, as in the CLI (shared with the
/// page).
pub(crate) async fn skip_for(
    caller: &Caller,
    client: &tokio_postgres::Client,
    id: i64,
) -> Result<Skipped, outboxd_admin::Error> {
    caller.owns_delivery(client, id).await?;
    keys::skip(client, id).await
}

/// Release the key halted by this failed delivery: the delivery stays
/// failed and the key's next delivery goes.
#[utoipa::path(post, path = "/api/halted-keys/{delivery_id}/skip", operation_id = "skipHaltedKey",
    params(("delivery_id" = i64, Path, minimum = 1, description = "The failed delivery that halts the key")),
    responses(
        (status = 200, description = "Skipped: the key goes on", body = Skipped),
        (status = 404, description = "No delivery by that id that the caller may see", body = ErrorBody),
        (status = 409, description = "The delivery halts no key: it is not the failed delivery of an ordered webhook under halt, or was skipped already", body = ErrorBody)))]
async fn skip(caller: Caller, db: Db, Path(delivery_id): Path<String>) -> ApiResult<Json<Skipped>> {
    let id = id_of(&delivery_id)?;
    Ok(Json(skip_for(&caller, &db, id).await?))
}
