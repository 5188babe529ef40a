//! `/api/webhooks`: list, add, read, replace, change and delete webhooks,
//! enable and disable them, rotate a secret, send a test event, replay
//! failures.
//!
//! The optional settings (`rate_limit`, `ordered`, `ordering_policy`) are
//! read as JSON values and checked here, so a wrong type is refused with
//! the field named rather than as malformed JSON.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use outboxd_admin::webhooks::{
    self as ops, Created, OrderingPolicy, Rotated, WebhookChange, WebhookInput, WebhookSummary,
};
use outboxd_admin::{replay, test_event, test_event::TestResult, validate, Error};
use outboxd_core::ordering::FailurePolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, id_of, overlap, ApiResult, Body, OptBody};
use crate::caller::Caller;
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, replace, patch, delete))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(replay_failed))
}

/// A webhook as a caller gives it (add, replace).
#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookInput, example = json!({"name": "Billing", "url": "http://127.0.0.1:9/hooks",
    "event_types": ["payment.*"], "headers": {"x-tenant": "acme"}, "rate_limit": 50,
    "ordered": false, "ordering_policy": "skip"}))]
pub(crate) struct WebhookBody {
    /// Free text, not blank.
    name: String,
    /// http:// or https://, no credentials.
    url: String,
    /// Exact types, prefixes (payment.*) or *; each must match a catalogued type.
    #[schema(min_items = 1)]
    event_types: Vec<String>,
    /// Extra request headers; absent and `null` both mean none.
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// The customer the webhook is for (null: a platform webhook, which
    /// gets every tenant's events). A portal session's is always its own.
    /// On a replace, absent or null keeps the webhook's tenant.
    #[serde(default)]
    tenant: Option<String>,
    /// Requests per second to it, all replicas together, at least 1;
    /// absent or null: no limit.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 2147483647)]
    rate_limit: Option<Value>,
    /// Send the events of one ordering key one at a time, in order;
    /// absent or null: false.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    ordered: Option<Value>,
    /// What an ordered webhook does when a delivery of a key finally
    /// fails: skip (the next goes) or halt (the key waits for an admin);
    /// absent or null: skip.
    #[serde(default)]
    #[schema(value_type = Option<OrderingPolicy>)]
    ordering_policy: Option<Value>,
}

impl WebhookBody {
    /// The input of a new webhook, the tenant's own for a tenant's session.
    pub(crate) fn into_input(self, caller: &Caller) -> Result<WebhookInput, Error> {
        let tenant = match caller.tenant() {
            Some(t) => Some(t.to_owned()),
            None => self.tenant.clone(),
        };
        let c = self.into_change(caller)?;
        Ok(WebhookInput {
            name: c.name.unwrap_or_default(),
            url: c.url.unwrap_or_default(),
            events: c.events.unwrap_or_default(),
            headers: c.headers.unwrap_or_default(),
            tenant,
            rate_limit: c.rate_limit,
            ordered: c.ordered,
            ordering_policy: c.ordering_policy,
        })
    }

    /// A replace as a change: every field given, but the tenant only when
    /// the body names one (a replace never makes a tenant's webhook the
    /// platform's, which would send it every tenant's events).
    fn into_change(self, caller: &Caller) -> Result<WebhookChange, Error> {
        Ok(WebhookChange {
            name: Some(self.name),
            url: Some(self.url),
            events: Some(self.event_types),
            headers: Some(self.headers.unwrap_or_default().into_iter().collect()),
            tenant: match caller.tenant() {
                Some(_) => None,
                None => self.tenant.map(Some),
            },
            rate_limit: Some(rate_limit_of(self.rate_limit.as_ref())?),
            ordered: Some(ordered_of(self.ordered.as_ref())?.unwrap_or(false)),
            ordering_policy: Some(
                policy_of(self.ordering_policy.as_ref())?
                    .unwrap_or_else(|| FailurePolicy::default().as_str().to_owned()),
            ),
        })
    }
}

/// What a partial edit changes: only the fields given. `null` removes
/// what can be removed: the headers, the rate limit, the tenant (which
/// makes it a platform webhook); for the other fields it is as absent.
#[derive(Deserialize, ToSchema)]
#[schema(as = WebhookChange, example = json!({"rate_limit": 20, "ordered": true, "ordering_policy": "halt"}))]
pub(crate) struct WebhookPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    #[schema(min_items = 1)]
    event_types: Option<Vec<String>>,
    /// The whole set; a value sent as `(hidden)` keeps the stored one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    headers: Option<Value>,
    /// Another tenant's id moves the webhook there (admin only; a portal
    /// session's webhook stays its own); null makes it a platform webhook.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    tenant: Option<Value>,
    /// At least 1; null removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 2147483647)]
    rate_limit: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    ordered: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<OrderingPolicy>)]
    ordering_policy: Option<Value>,
}

impl WebhookPatch {
    fn into_change(self, caller: &Caller) -> Result<WebhookChange, Error> {
        let headers = match self.headers {
            None => None,
            Some(Value::Null) => Some(Vec::new()),
            Some(Value::Object(m)) => Some(
                m.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(v) => Ok((k, v)),
                        _ => Err(Error::invalid(
                            "headers",
                            format!("the value of {k} must be a string"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => {
                return Err(Error::invalid(
                    "headers",
                    "headers must be an object of name: value, or null for none",
                ))
            }
        };
        let tenant = match (caller.tenant(), self.tenant) {
            (Some(_), _) | (None, None) => None,
            (None, Some(Value::Null)) => Some(None),
            (None, Some(Value::String(t))) => Some(Some(t)),
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "tenant",
                    "tenant must be a tenant id, or null for a platform webhook",
                ))
            }
        };
        Ok(WebhookChange {
            name: self.name,
            url: self.url,
            events: self.event_types,
            headers,
            tenant,
            rate_limit: match &self.rate_limit {
                None => None,
                Some(v) => Some(rate_limit_of(Some(v))?),
            },
            ordered: ordered_of(self.ordered.as_ref())?,
            ordering_policy: policy_of(self.ordering_policy.as_ref())?,
        })
    }
}

/// A field given, `null` included (absent is the field's default, None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `rate_limit`: a whole number (checked by the shared rules), or null.
fn rate_limit_of(v: Option<&Value>) -> Result<Option<i64>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            Error::invalid(
                "rate_limit",
                format!("{v} is not a rate limit: give requests per second, a whole number at least 1, or null for no limit"),
            )
        }),
    }
}

/// `ordered`: true or false (null: not given).
fn ordered_of(v: Option<&Value>) -> Result<Option<bool>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(Error::invalid(
            "ordered",
            format!("{v} is not true or false: ordered is whether the events of one ordering key go one at a time"),
        )),
    }
}

/// `ordering_policy`: a string, checked by the shared rules (null: not given).
fn policy_of(v: Option<&Value>) -> Result<Option<String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) => Ok(Some(p.clone())),
        Some(v) => Err(Error::invalid(
            "ordering_policy",
            format!("{v} is not an ordering policy: use skip (a failed event stays failed and the next one goes) or halt (the key waits for an admin)"),
        )),
    }
}

/// A webhook as saved, with what may keep it from working as meant.
#[derive(Serialize, ToSchema)]
#[schema(as = SavedWebhook)]
pub(crate) struct Saved {
    #[serde(flatten)]
    webhook: WebhookSummary,
    /// A URL the SSRF guard would refuse, for one.
    warnings: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Removed {
    id: i64,
    removed: bool,
    cancelled_deliveries: i64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Toggled {
    id: i64,
    enabled: bool,
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_deliveries: Option<i64>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct DisableBody {
    /// Shown beside the webhook; "disabled by an admin" when not given.
    reason: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct RotateBody {
    /// How long the old secret signs too: 0, 30m, 24h (the default), 7d.
    overlap: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct TestBody {
    /// The event type of the test event; its catalog example is the payload.
    event_type: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ReplayBody {
    /// 1h, 7d or an RFC 3339 time.
    since: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Replayed {
    replayed: i32,
    since: String,
}

/// Checks a body against the rules and the catalog.
async fn checked(
    state: &AppState,
    caller: &Caller,
    client: &tokio_postgres::Client,
    body: WebhookBody,
) -> ApiResult<ops::CheckedWebhook> {
    let checked = body.into_input(caller)?.check_with(&state.portal.rules)?;
    ops::require_catalogued(client, &checked.event_types).await?;
    Ok(checked)
}

/// Applies an edit to webhook `id`: checked as the webhook it becomes
/// (under its tenant's rules, whoever asks), its patterns against the
/// catalog when they are given, then written; the webhook as saved.
async fn apply(
    state: &AppState,
    client: &tokio_postgres::Client,
    id: i64,
    change: WebhookChange,
) -> ApiResult<Json<Saved>> {
    let rules = &state.portal.rules;
    let events_given = change.events.is_some();
    let checked = ops::edited(client, id, change, rules).await?;
    if events_given {
        ops::require_catalogued(client, &checked.event_types).await?;
    }
    ops::update(client, id, &checked, rules).await?;
    let warnings = ops::warnings(&checked, &state.targets_for(checked.tenant.as_deref())).await;
    Ok(Json(Saved {
        webhook: ops::get(client, id).await?,
        warnings,
    }))
}

/// Every webhook with its health over the last hour.
#[utoipa::path(get, path = "/api/webhooks", operation_id = "listWebhooks", params(ListQuery),
    responses((status = 200, description = "The webhooks", body = [WebhookSummary])))]
async fn list(
    caller: Caller,
    db: Db,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<WebhookSummary>>> {
    let query = crate::http::pairs(query.unwrap_or_default().as_bytes());
    let tenant = match caller.tenant() {
        Some(t) => Some(t),
        None => crate::http::non_blank(&query, "tenant"),
    };
    Ok(Json(ops::list_of(&db, tenant).await?))
}

/// The list's one parameter (the handler reads the raw query).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Only this tenant's webhooks (a portal session: always its own).
    tenant: Option<String>,
}

/// Add a webhook; the answer carries its secret, shown this once.
#[utoipa::path(post, path = "/api/webhooks", operation_id = "createWebhook",
    request_body = WebhookBody,
    responses((status = 201, description = "Added", body = Created)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    db: Db,
    Body(body): Body<WebhookBody>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let checked = checked(&state, &caller, &db, body).await?;
    Ok(created(
        ops::create_with(
            &db,
            checked.clone(),
            &state.targets_for(checked.tenant.as_deref()),
            &state.portal.rules,
        )
        .await?,
    ))
}

/// `reveal=headers`: the custom headers' values, hidden otherwise (the
/// handler reads the raw query).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct GetQuery {
    #[param(inline)]
    reveal: Option<Reveal>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum Reveal {
    Headers,
}

/// One webhook.
#[utoipa::path(get, path = "/api/webhooks/{id}", operation_id = "getWebhook",
    params(("id" = i64, Path, minimum = 1), GetQuery),
    responses((status = 200, description = "The webhook", body = WebhookSummary)))]
async fn get(
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<WebhookSummary>> {
    let id = owned(&caller, &db, &id).await?;
    let mut hook = ops::get(&db, id).await?;
    let query = crate::http::pairs(query.unwrap_or_default().as_bytes());
    match crate::http::first(&query, "reveal") {
        None => {}
        Some("headers") => hook.headers = ops::header_values(&db, id).await?,
        Some(other) => {
            return Err(super::ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("reveal={other:?}: the only value is headers"),
            )
            .field("reveal"))
        }
    }
    Ok(Json(hook))
}

/// The path's webhook id, if the caller may see that webhook.
async fn owned(caller: &Caller, client: &tokio_postgres::Client, id: &str) -> ApiResult<i64> {
    let id = id_of(id)?;
    caller.owns_webhook(client, id).await?;
    Ok(id)
}

/// Replace name, URL, event types, headers, rate limit and ordering (the
/// tenant only when given).
#[utoipa::path(put, path = "/api/webhooks/{id}", operation_id = "updateWebhook",
    params(("id" = i64, Path, minimum = 1)),
    request_body = WebhookBody,
    responses((status = 200, description = "The webhook as saved", body = Saved)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
    Body(body): Body<WebhookBody>,
) -> ApiResult<Json<Saved>> {
    let id = owned(&caller, &db, &id).await?;
    let change = body.into_change(&caller)?;
    apply(&state, &db, id, change).await
}

/// Change the fields given and keep the rest.
#[utoipa::path(patch, path = "/api/webhooks/{id}", operation_id = "patchWebhook",
    params(("id" = i64, Path, minimum = 1)),
    request_body = WebhookPatch,
    responses((status = 200, description = "The webhook as saved", body = Saved)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
    Body(body): Body<WebhookPatch>,
) -> ApiResult<Json<Saved>> {
    let id = owned(&caller, &db, &id).await?;
    let change = body.into_change(&caller)?;
    apply(&state, &db, id, change).await
}

/// Delete a webhook; its waiting deliveries are cancelled.
#[utoipa::path(delete, path = "/api/webhooks/{id}", operation_id = "deleteWebhook",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "Deleted", body = Removed)))]
async fn delete(caller: Caller, mut db: Db, Path(id): Path<String>) -> ApiResult<Json<Removed>> {
    let id = owned(&caller, &db, &id).await?;
    let (hook, cancelled) = ops::remove(&mut db, id).await?;
    Ok(Json(Removed {
        id: hook.id,
        removed: true,
        cancelled_deliveries: cancelled,
    }))
}

/// Enable.
#[utoipa::path(post, path = "/api/webhooks/{id}/enable", operation_id = "enableWebhook",
    params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "Enabled", body = Toggled)))]
async fn enable(caller: Caller, db: Db, Path(id): Path<String>) -> ApiResult<Json<Toggled>> {
    let id = owned(&caller, &db, &id).await?;
    let (hook, changed) = ops::enable(&db, id).await?;
    Ok(Json(Toggled {
        id: hook.id,
        enabled: true,
        changed,
        cancelled_deliveries: None,
    }))
}

/// Disable; waiting deliveries are cancelled.
#[utoipa::path(post, path = "/api/webhooks/{id}/disable", operation_id = "disableWebhook",
    params(("id" = i64, Path, minimum = 1)),
    request_body(content = Option<DisableBody>),
    responses((status = 200, description = "Disabled", body = Toggled)))]
async fn disable(
    caller: Caller,
    mut db: Db,
    Path(id): Path<String>,
    OptBody(b): OptBody<DisableBody>,
) -> ApiResult<Json<Toggled>> {
    let id = owned(&caller, &db, &id).await?;
    let reason = b.reason.unwrap_or_else(|| "disabled by an admin".into());
    let (hook, cancelled) = ops::disable(&mut db, id, &reason).await?;
    Ok(Json(Toggled {
        id: hook.id,
        enabled: false,
        changed: cancelled.is_some(),
        cancelled_deliveries: Some(cancelled.unwrap_or(0)),
    }))
}

/// New secret; the old one signs too during the overlap (default 24h).
#[utoipa::path(post, path = "/api/webhooks/{id}/rotate-secret", operation_id = "rotateSecret",
    params(("id" = i64, Path, minimum = 1)),
    request_body(content = Option<RotateBody>),
    responses((status = 200, description = "The new secret, shown this once", body = Rotated)))]
async fn rotate_secret(
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
    OptBody(b): OptBody<RotateBody>,
) -> ApiResult<Json<Rotated>> {
    let id = owned(&caller, &db, &id).await?;
    let overlap = overlap(b.overlap.as_deref())?;
    Ok(Json(ops::rotate_secret(&db, id, overlap).await?))
}

/// Send one signed test event now and record it.
#[utoipa::path(post, path = "/api/webhooks/{id}/test", operation_id = "sendTestEvent",
    params(("id" = i64, Path, minimum = 1)),
    request_body(content = Option<TestBody>),
    responses((status = 200, description = "What the endpoint answered", body = TestResult)))]
async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptBody(b): OptBody<TestBody>,
) -> ApiResult<Json<TestResult>> {
    let id = id_of(&id)?;
    caller.owns_webhook_in(&state.pool, id).await?;
    let event_type = b
        .event_type
        .unwrap_or_else(|| test_event::DEFAULT_EVENT_TYPE.into());
    let r = test_event::send(
        &state.pool,
        &state.http,
        id,
        &event_type,
        state.request_timeout,
    )
    .await?;
    Ok(Json(r))
}

/// Replay the webhook's failed deliveries created since a time.
#[utoipa::path(post, path = "/api/webhooks/{id}/replay-failed", operation_id = "replayFailed",
    params(("id" = i64, Path, minimum = 1)),
    request_body = ReplayBody,
    responses((status = 200, description = "How many were replayed", body = Replayed)))]
async fn replay_failed(
    caller: Caller,
    db: Db,
    Path(id): Path<String>,
    Body(b): Body<ReplayBody>,
) -> ApiResult<Json<Replayed>> {
    let id = owned(&caller, &db, &id).await?;
    let since = validate::since(&b.since)?;
    let since = outboxd_admin::since_time(&db, &since).await?;
    let n = replay::webhook(&db, id, since, replay::Which::Failed).await?;
    Ok(Json(Replayed {
        replayed: n,
        since: outboxd_admin::format::rfc3339(since),
    }))
}
