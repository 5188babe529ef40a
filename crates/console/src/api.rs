//! The JSON API under `/api/`: the console's operations for scripts and
//! integration platforms, described by `/api/openapi.json`.
//!
//! Authentication is `Authorization: Bearer <token>` only, never the
//! browser's cookie, so a cross-site page cannot make a browser call it.
//! Every error is `{"error": "...", "field": "..."}` with 400 (bad input,
//! malformed JSON), 401, 403, 404, 409 or 413.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use outboxd_admin::webhooks::WebhookInput;
use outboxd_admin::{deliveries, event_types, replay, stats, test_event, validate, webhooks};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Client;

use crate::auth;
use crate::http::{self, error_json, Body};
use crate::{status_of, zapier, State};

/// An error answer: status, message, and the field at fault if one is.
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no such endpoint; see /api/openapi.json",
        )
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

pub(crate) type ApiResult = Result<Response<Body>, ApiError>;

pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let host = http::header(&req, "host");
    if !state.auth.bearer_ok(http::header(&req, "authorization")) {
        let mut r = error_json(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer <OUTBOXD_ADMIN_TOKEN>",
            None,
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if !auth::same_origin(
        http::header(&req, "origin"),
        http::header(&req, "sec-fetch-site"),
        host,
    ) || (!state.auth.requires_login() && !auth::loopback_host(host))
    {
        return error_json(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused",
            None,
        );
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = http::pairs(req.uri().query().unwrap_or("").as_bytes());
    let Some(body) = http::read_body(req).await else {
        return error_json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB",
            None,
        );
    };
    let segments: Vec<&str> = path
        .trim_start_matches("/api")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // A test event takes a connection only around its request, not for it.
    if let (&Method::POST, ["webhooks", id, "test"]) = (&method, segments.as_slice()) {
        return answer(test_event(state, id, &body).await);
    }
    let client = match state.pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "admin API: database unavailable");
            return error_json(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable",
                None,
            );
        }
    };
    let mut client = client;
    answer(dispatch(state, &mut client, &method, &segments, &query, &body).await)
}

fn answer(result: ApiResult) -> Response<Body> {
    match result {
        Ok(r) => r,
        Err(e) => {
            let mut r = error_json(e.status, &e.message, e.field);
            if e.status == StatusCode::METHOD_NOT_ALLOWED {
                if let Ok(v) = HeaderValue::from_str(e.message.trim_start_matches("use ")) {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
            }
            r
        }
    }
}

async fn test_event(state: &State, id: &str, body: &[u8]) -> ApiResult {
    let b: TestBody = parse_or_default(body)?;
    let event_type = b
        .event_type
        .unwrap_or_else(|| test_event::DEFAULT_EVENT_TYPE.into());
    let r = test_event::send(
        &state.pool,
        &state.http,
        id_of(id)?,
        &event_type,
        state.request_timeout,
    )
    .await?;
    ok(&r)
}

async fn dispatch(
    state: &State,
    client: &mut Client,
    method: &Method,
    segments: &[&str],
    query: &[(String, String)],
    body: &[u8],
) -> ApiResult {
    use Method as M;
    match (method, segments) {
        (&M::GET, ["webhooks"]) => ok(&webhooks::list(client).await?),
        (&M::POST, ["webhooks"]) => {
            let input: WebhookBody = parse(body)?;
            let checked = input.into_input().check()?;
            webhooks::require_catalogued(client, &checked.event_types).await?;
            let created = webhooks::create(client, checked, &state.targets).await?;
            Ok(http::json(StatusCode::CREATED, &created))
        }
        (&M::GET, ["webhooks", id]) => {
            let id = id_of(id)?;
            let mut hook = webhooks::get(client, id).await?;
            match http::first(query, "reveal") {
                None => {}
                Some("headers") => hook.headers = webhooks::header_values(client, id).await?,
                Some(other) => {
                    return Err(ApiError {
                        field: Some("reveal"),
                        ..ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("reveal={other:?}: the only value is headers"),
                        )
                    })
                }
            }
            ok(&hook)
        }
        (&M::PUT, ["webhooks", id]) => {
            let id = id_of(id)?;
            webhooks::get(client, id).await?;
            let input: WebhookBody = parse(body)?;
            let checked = input.into_input().check()?;
            webhooks::require_catalogued(client, &checked.event_types).await?;
            let warnings = webhooks::update(client, id, &checked, &state.targets).await?;
            let mut saved = serde_json::to_value(webhooks::get(client, id).await?)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            saved["warnings"] = json!(warnings);
            ok(&saved)
        }
        (&M::DELETE, ["webhooks", id]) => {
            let (hook, cancelled) = webhooks::remove(client, id_of(id)?).await?;
            ok(&json!({"id": hook.id, "removed": true, "cancelled_deliveries": cancelled}))
        }
        (&M::POST, ["webhooks", id, "enable"]) => {
            let (hook, changed) = webhooks::enable(client, id_of(id)?).await?;
            ok(&json!({"id": hook.id, "enabled": true, "changed": changed}))
        }
        (&M::POST, ["webhooks", id, "disable"]) => {
            let b: DisableBody = parse_or_default(body)?;
            let reason = b.reason.unwrap_or_else(|| "disabled by an admin".into());
            let (hook, cancelled) = webhooks::disable(client, id_of(id)?, &reason).await?;
            ok(
                &json!({"id": hook.id, "enabled": false, "changed": cancelled.is_some(),
                        "cancelled_deliveries": cancelled.unwrap_or(0)}),
            )
        }
        (&M::POST, ["webhooks", id, "rotate-secret"]) => {
            let b: RotateBody = parse_or_default(body)?;
            let overlap = overlap(b.overlap.as_deref())?;
            ok(&webhooks::rotate_secret(client, id_of(id)?, overlap).await?)
        }
        (&M::POST, ["webhooks", id, "test"]) => test_event(state, id, body).await,
        (&M::POST, ["webhooks", id, "replay-failed"]) => {
            let b: ReplayBody = parse(body)?;
            let since = validate::since(&b.since)?;
            let since = outboxd_admin::since_time(client, &since).await?;
            let n = replay::webhook(client, id_of(id)?, since, replay::Which::Failed).await?;
            ok(&json!({"replayed": n, "since": outboxd_admin::format::rfc3339(since)}))
        }
        (&M::GET, ["deliveries"]) => {
            let filter = log_filter(client, query).await?;
            ok(&deliveries::log(client, &filter).await?)
        }
        (&M::GET, ["deliveries", id]) => ok(&deliveries::show(client, id_of(id)?).await?),
        (&M::POST, ["deliveries", id, "replay"]) => {
            ok(&replay::delivery(client, id_of(id)?).await?)
        }
        (&M::GET, ["event-types"]) => ok(&event_types::list(client).await?),
        (&M::POST, ["event-types"]) => {
            let b: EventTypeBody = parse(body)?;
            let name = b.name.clone().unwrap_or_default();
            event_types::upsert(
                client,
                &name,
                b.description.as_deref().unwrap_or(""),
                b.example_payload.as_ref(),
                false,
            )
            .await?;
            Ok(http::json(
                StatusCode::CREATED,
                &event_types::get(client, &name).await?,
            ))
        }
        (&M::GET, ["event-types", name]) => ok(&event_types::get(client, name).await?),
        (&M::PUT, ["event-types", name]) => {
            let b: EventTypeBody = parse(body)?;
            if b.name.as_deref().is_some_and(|n| n != *name) {
                return Err(ApiError {
                    status: StatusCode::BAD_REQUEST,
                    message: "the name in the body differs from the name in the path".into(),
                    field: Some("name"),
                });
            }
            event_types::get(client, name).await?;
            event_types::upsert(
                client,
                name,
                b.description.as_deref().unwrap_or(""),
                b.example_payload.as_ref(),
                true,
            )
            .await?;
            ok(&event_types::get(client, name).await?)
        }
        (&M::DELETE, ["event-types", name]) => {
            event_types::remove(client, name).await?;
            ok(&json!({"name": name, "removed": true}))
        }
        (&M::GET, ["stats"]) => ok(&stats::stats(client).await?),
        (&M::POST, ["hooks"]) => zapier::subscribe(client, parse(body)?).await,
        (&M::GET, ["hooks", "sample"]) => zapier::sample(client, query).await,
        (&M::DELETE, ["hooks", id]) if *id != "sample" => {
            zapier::unsubscribe(client, id_of(id)?).await
        }
        (_, [..]) => Err(match allowed(segments) {
            Some(methods) => ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: format!("use {methods}"),
                field: None,
            },
            None => ApiError::not_found(),
        }),
    }
}

/// The methods a path takes, for 405 answers (keep in step with `dispatch`).
fn allowed(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["webhooks"] | ["event-types"] => "GET, POST",
        ["webhooks", _] | ["event-types", _] => "GET, PUT, DELETE",
        ["webhooks", _, "enable" | "disable" | "rotate-secret" | "test" | "replay-failed"] => {
            "POST"
        }
        ["deliveries"] | ["deliveries", _] | ["stats"] | ["hooks", "sample"] => "GET",
        ["deliveries", _, "replay"] | ["hooks"] => "POST",
        ["hooks", _] => "DELETE",
        _ => return None,
    })
}

/// 200 with `value` as JSON.
fn ok<T: Serialize>(value: &T) -> ApiResult {
    Ok(http::json(StatusCode::OK, value))
}

fn id_of(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(ApiError::not_found)
}

pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        message: format!("malformed JSON: {e}"),
        field: None,
    })
}

/// An optional body: empty means all defaults.
fn parse_or_default<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
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

/// The delivery-log filter of a query string (the API's and the console's).
pub(crate) async fn log_filter(
    client: &Client,
    query: &[(String, String)],
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
    })
}

#[derive(Deserialize)]
struct WebhookBody {
    name: String,
    url: String,
    event_types: Vec<String>,
    /// Optional: absent and `null` both mean none.
    #[serde(default)]
    headers: Option<std::collections::BTreeMap<String, String>>,
}

impl WebhookBody {
    fn into_input(self) -> WebhookInput {
        WebhookInput {
            name: self.name,
            url: self.url,
            events: self.event_types,
            headers: self.headers.unwrap_or_default().into_iter().collect(),
            // The API does not set limits yet: an edit keeps the current one.
            rate_limit: None,
        }
    }
}

#[derive(Deserialize, Default)]
struct DisableBody {
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct RotateBody {
    overlap: Option<String>,
}

#[derive(Deserialize, Default)]
struct TestBody {
    event_type: Option<String>,
}

#[derive(Deserialize)]
struct ReplayBody {
    since: String,
}

#[derive(Deserialize)]
struct EventTypeBody {
    name: Option<String>,
    description: Option<String>,
    example_payload: Option<serde_json::Value>,
}
