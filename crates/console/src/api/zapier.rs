//! Zapier REST Hooks: subscribe (`POST /api/hooks` with `target_url` and
//! `event`, answered with the new webhook's id), unsubscribe
//! (`DELETE /api/hooks/{id}`) and a sample (`GET /api/hooks/sample?event=`)
//! shaped like the body a subscriber receives, with the catalog's example
//! payload as `data`. A subscription is an ordinary webhook, so it shows in
//! the console; a receiver that answers 410 Gone unsubscribes itself.

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::Json;
use outboxd_admin::webhooks::{self, WebhookInput};
use outboxd_admin::{event_types, validate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, id_of, ApiError, ApiResult, Body};
use crate::caller::Caller;
use crate::http::{self, Db};
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscribe))
        .routes(routes!(sample))
        .routes(routes!(unsubscribe))
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"target_url": "http://127.0.0.1:9/zap", "event": "payment.received"}))]
pub(crate) struct Subscribe {
    target_url: String,
    event: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Subscribed {
    id: i64,
    target_url: String,
    event: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Unsubscribed {
    id: i64,
    removed: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Sample {
    r#type: String,
    timestamp: String,
    /// The catalog's example payload, as stored (it may be nested deeper
    /// than a serde_json::Value can hold).
    #[schema(value_type = serde_json::Value)]
    data: outboxd_admin::json::StoredJson,
}

/// The sample's one parameter (the handler reads the raw query).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SampleQuery {
    #[param(example = "payment.received")]
    event: String,
}

/// Zapier REST Hook subscribe: a webhook for one event type.
#[utoipa::path(post, path = "/api/hooks", operation_id = "zapierSubscribe",
    request_body = Subscribe,
    responses((status = 201, description = "Subscribed", body = Subscribed)))]
async fn subscribe(
    caller: Caller,
    db: Db,
    Body(s): Body<Subscribe>,
) -> ApiResult<(StatusCode, Json<Subscribed>)> {
    caller.admin_only()?;
    let checked = WebhookInput {
        name: format!("Zapier: {}", s.event.trim()),
        url: s.target_url,
        events: vec![s.event],
        headers: Vec::new(),
        tenant: None,
        ..WebhookInput::default()
    }
    .check()?;
    webhooks::require_catalogued(&db, &checked.event_types).await?;
    // A REST Hook subscription has no one to show a warning to.
    let c = webhooks::create(&db, checked, &outboxd_deliverer::TargetPolicy::default()).await?;
    Ok(created(Subscribed {
        id: c.id,
        target_url: c.webhook.url,
        event: c.webhook.event_types[0].clone(),
    }))
}

/// Zapier REST Hook unsubscribe.
#[utoipa::path(delete, path = "/api/hooks/{id}", operation_id = "zapierUnsubscribe",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "Unsubscribed", body = Unsubscribed)))]
async fn unsubscribe(
    caller: Caller,
    mut db: Db,
    Path(id): Path<String>,
) -> ApiResult<Json<Unsubscribed>> {
    caller.admin_only()?;
    let (hook, _) = webhooks::remove(&mut db, id_of(&id)?).await?;
    Ok(Json(Unsubscribed {
        id: hook.id,
        removed: true,
    }))
}

/// Zapier sample: the body a subscriber receives, with the catalog's example payload.
#[utoipa::path(get, path = "/api/hooks/sample", operation_id = "zapierSample",
    params(SampleQuery),
    responses((status = 200, description = "One sample", body = [Sample])))]
async fn sample(caller: Caller, db: Db, RawQuery(query): RawQuery) -> ApiResult<Json<Vec<Sample>>> {
    caller.admin_only()?;
    let query = http::pairs(query.unwrap_or_default().as_bytes());
    let Some(event) = http::non_blank(&query, "event") else {
        return Err(
            ApiError::new(StatusCode::BAD_REQUEST, "give ?event=<event type>").field("event"),
        );
    };
    validate::event_type(event)?;
    let t = event_types::get(&db, event).await?;
    Ok(Json(vec![Sample {
        r#type: t.name,
        timestamp: outboxd_admin::format::rfc3339(chrono::Utc::now()),
        data: t.example_payload,
    }]))
}
