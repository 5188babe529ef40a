//! `/api/event-types`: the event catalog, listed, read, added, updated and
//! removed. Subscriptions are checked against it; test events and Zapier
//! samples take their payload from its examples.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use outboxd_admin::event_types::{self, EventType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, ApiError, ApiResult, Body};
use crate::caller::Caller;
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = EventTypeInput, example = json!({"name": "order.shipped",
    "description": "An order left the warehouse.", "example_payload": {"order": 7}}))]
pub(crate) struct EventTypeBody {
    /// lowercase [a-z0-9_.:-], at most 128 characters; required to add, optional to update.
    name: Option<String>,
    description: Option<String>,
    /// Any JSON; kept on update when not given.
    example_payload: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RemovedEventType {
    name: String,
    removed: bool,
}

/// The event catalog.
#[utoipa::path(get, path = "/api/event-types", operation_id = "listEventTypes",
    responses((status = 200, description = "The catalog", body = [EventType])))]
async fn list(db: Db) -> ApiResult<Json<Vec<EventType>>> {
    Ok(Json(event_types::list(&db).await?))
}

/// Add an event type.
#[utoipa::path(post, path = "/api/event-types", operation_id = "createEventType",
    request_body = EventTypeBody,
    responses((status = 201, description = "Added", body = EventType)))]
async fn create(
    caller: Caller,
    db: Db,
    Body(b): Body<EventTypeBody>,
) -> ApiResult<(StatusCode, Json<EventType>)> {
    caller.admin_only()?;
    let name = b.name.clone().unwrap_or_default();
    event_types::upsert(
        &db,
        &name,
        b.description.as_deref().unwrap_or(""),
        b.example_payload.as_ref(),
        false,
    )
    .await?;
    Ok(created(event_types::get(&db, &name).await?))
}

/// One event type.
#[utoipa::path(get, path = "/api/event-types/{name}", operation_id = "getEventType",
    params(("name" = String, Path)),
    responses((status = 200, description = "The event type", body = EventType)))]
async fn get(db: Db, Path(name): Path<String>) -> ApiResult<Json<EventType>> {
    Ok(Json(event_types::get(&db, &name).await?))
}

/// Update description and example (kept when not given).
#[utoipa::path(put, path = "/api/event-types/{name}", operation_id = "updateEventType",
    params(("name" = String, Path)),
    request_body = EventTypeBody,
    responses((status = 200, description = "The event type as saved", body = EventType)))]
async fn update(
    caller: Caller,
    db: Db,
    Path(name): Path<String>,
    Body(b): Body<EventTypeBody>,
) -> ApiResult<Json<EventType>> {
    caller.admin_only()?;
    if b.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the name in the body differs from the name in the path",
        )
        .field("name"));
    }
    event_types::get(&db, &name).await?;
    event_types::upsert(
        &db,
        &name,
        b.description.as_deref().unwrap_or(""),
        b.example_payload.as_ref(),
        true,
    )
    .await?;
    Ok(Json(event_types::get(&db, &name).await?))
}

/// Remove from the catalog (subscriptions are not touched).
#[utoipa::path(delete, path = "/api/event-types/{name}", operation_id = "deleteEventType",
    params(("name" = String, Path)),
    responses((status = 200, description = "Removed", body = RemovedEventType)))]
async fn delete(
    caller: Caller,
    db: Db,
    Path(name): Path<String>,
) -> ApiResult<Json<RemovedEventType>> {
    caller.admin_only()?;
    event_types::remove(&db, &name).await?;
    Ok(Json(RemovedEventType {
        name,
        removed: true,
    }))
}
