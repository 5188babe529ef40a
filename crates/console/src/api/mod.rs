//! The JSON API under `/api/`: the console's operations for scripts and
//! integration platforms. Each resource is a module with its handlers and
//! a `router()`; the OpenAPI document is assembled from their `#[utoipa::path]`
//! annotations and types, so the document cannot drift from the routes.
//!
//! Authentication is `Authorization: Bearer <token>` only, never the
//! browser's cookie, so a cross-site page cannot make a browser call it
//! (the guard in `guard.rs`). Every error is `{"error": "...", "field": "..."}`
//! with 400 (bad input, malformed JSON), 401, 403, 404, 405, 409, 413 or 503.

mod catalog;
mod deliveries;
mod halted_keys;
mod tenants;
mod webhooks;
mod zapier;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::{status_of, AppState};

/// What every error answer says.
const ERRORS: &str = "An error: 400 bad input or malformed JSON, 401 no or wrong token, \
403 cross-origin, 404 not found, 409 conflict, 413 body too large, 503 database unavailable";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "outboxd admin API",
        description = "The admin console's operations as JSON, on OUTBOXD_ADMIN_LISTEN. \
Send Authorization: Bearer <OUTBOXD_ADMIN_TOKEN>. Errors are {\"error\": \"...\", \"field\": \"...\"}."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    security(("bearer" = []))
)]
struct Doc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, with its part of the document.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(Doc::openapi())
        .merge(webhooks::router())
        .merge(deliveries::router())
        .merge(halted_keys::router())
        .merge(catalog::router())
        .merge(zapier::router())
        .merge(tenants::router())
}

/// The OpenAPI document of every API route.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    finish(router().into_openapi())
}

/// Gives every operation the error answer all of them share.
pub(crate) fn finish(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = ResponseBuilder::new()
        .description(ERRORS)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.patch,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.responses
                .responses
                .insert("default".into(), error.clone().into());
        }
    }
    doc
}

/// An error answer: status, message, and the field at fault if one is.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<&'static str>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such endpoint; see /api/openapi.json",
        )
    }

    pub fn field(mut self, field: &'static str) -> ApiError {
        self.field = Some(field);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            field: self.field,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<outboxd_admin::Error> for ApiError {
    fn from(e: outboxd_admin::Error) -> ApiError {
        let status = status_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "admin API request failed");
        }
        let field = match &e {
            outboxd_admin::Error::Invalid { field, .. } => Some(*field),
            _ => None,
        };
        ApiError {
            status,
            message: e.to_string(),
            field,
        }
    }
}

impl From<crate::caller::Forbidden> for ApiError {
    fn from(_: crate::caller::Forbidden) -> ApiError {
        use crate::caller::Forbidden;
        ApiError::new(Forbidden::STATUS, Forbidden::MESSAGE)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// 201 Created with `value` as JSON.
pub(crate) fn created<T: Serialize>(value: T) -> (StatusCode, Json<T>) {
    (StatusCode::CREATED, Json(value))
}

/// A JSON request body: 400 with serde's reason when it does not parse,
/// whatever the content type says (scripts often send none).
pub(crate) struct Body<T>(pub T);

/// A JSON request body that may be left out: empty means all defaults.
pub(crate) struct OptBody<T>(pub T);

async fn bytes_of(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &()).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB",
        )
    })
}

/// Every body is an object: serde would take a struct from an array of
/// its fields' values too, which the document does not allow.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed JSON: the body must be a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Body<T>, ApiError> {
        parse(&bytes_of(req).await?).map(Body)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<OptBody<T>, ApiError> {
        let body = bytes_of(req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(OptBody(T::default()))
        } else {
            parse(&body).map(OptBody)
        }
    }
}

/// A path's id: anything but a positive whole number names no resource.
pub(crate) fn id_of(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(ApiError::not_found)
}

/// The overlap of a secret rotation: a duration, `0` for none; 24h unset.
pub(crate) fn overlap(given: Option<&str>) -> Result<Duration, outboxd_admin::Error> {
    match given.map(str::trim) {
        None | Some("") => Ok(Duration::from_secs(24 * 3600)),
        Some("0") => Ok(Duration::ZERO),
        Some(s) => humantime::parse_duration(s).map_err(|_| {
            outboxd_admin::Error::invalid(
                "overlap",
                format!("{s:?} is not a duration; use 0, 30m, 24h or 7d"),
            )
        }),
    }
}

pub(crate) use deliveries::log_filter;
pub(crate) use halted_keys::{skip_for, webhook_filter};
