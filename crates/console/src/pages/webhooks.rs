//! The webhook screens: the list with each webhook's health, the add and
//! edit form (events picked from the catalog), enable, disable, delete
//! after a confirmation, rotating the secret (shown once), a test event
//! with the verdict on the page, and replaying failures.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use outboxd_admin::format::{age, time};
use outboxd_admin::webhooks::{self, WebhookChange, WebhookInput, WebhookSummary};
use outboxd_admin::{event_types, replay, test_event, validate, Error};
use tokio_postgres::Client;

use super::{head, id_of, render, Ctx, Form, Layout, PageResult};
use crate::http::Db;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list))
        .route("/webhooks/new", get(new_form).post(add))
        .route("/webhooks/{id}", get(detail))
        .route("/webhooks/{id}/edit", get(edit_form).post(edit))
        .route("/webhooks/{id}/enable", post(enable))
        .route("/webhooks/{id}/disable", post(disable))
        .route("/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/webhooks/{id}/delete", get(confirm_delete).post(delete))
        .route("/webhooks/{id}/test", post(send_test))
        .route("/webhooks/{id}/replay-failed", post(replay_failed))
}

async fn list(ctx: Ctx, db: Db) -> PageResult {
    list_page(ctx, &db).await
}

/// The list, with the notice or error `ctx` carries: the caller's
/// webhooks, or the admin's filter (`?tenant=`).
async fn list_page(ctx: Ctx, client: &Client) -> PageResult {
    let filter = ctx.q("tenant");
    let tenant = match ctx.caller.tenant() {
        Some(t) => Some(t),
        None => Some(filter.as_str()).filter(|t| !t.is_empty()),
    };
    let rows = webhooks::list_of(client, tenant)
        .await?
        .into_iter()
        .map(WebhookRow::from)
        .collect();
    Ok(render(
        StatusCode::OK,
        &Webhooks {
            l: ctx.l,
            rows,
            event_types: test_types(client).await?,
        },
    ))
}

/// The event types a test event may have: the catalog's and the default.
async fn test_types(client: &Client) -> Result<Vec<String>, Error> {
    let mut types: Vec<String> = event_types::list(client)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    types.push(test_event::DEFAULT_EVENT_TYPE.into());
    Ok(types)
}

/// One webhook's section of the list, on a page of its own.
async fn detail(ctx: Ctx, db: Db, Path(id): Path<String>) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let row = WebhookRow::from(webhooks::get(&db, id).await?);
    Ok(render(
        StatusCode::OK,
        &Webhooks {
            l: ctx.l,
            rows: vec![row],
            event_types: test_types(&db).await?,
        },
    ))
}

async fn new_form(ctx: Ctx, db: Db) -> PageResult {
    let form = WebhookForm::new(ctx.l, None);
    let form = form.with_catalog(&db, &[]).await?;
    Ok(render(StatusCode::OK, &form))
}

async fn edit_form(ctx: Ctx, db: Db, Path(id): Path<String>) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let w = webhooks::get(&db, id).await?;
    let mut form = WebhookForm::new(ctx.l, Some(w.id));
    form.name = w.name.clone();
    form.url = w.url.clone();
    form.headers = headers_text(&w.headers);
    form.tenant = w.tenant.clone().unwrap_or_default();
    form.rate_limit = w.rate_limit.map(|n| n.to_string()).unwrap_or_default();
    form.ordered = w.ordered;
    form.ordering_policy = w.ordering_policy.clone();
    let form = form.with_catalog(&db, &w.event_types).await?;
    Ok(render(StatusCode::OK, &form))
}

async fn add(State(state): State<AppState>, ctx: Ctx, db: Db, form: Form) -> PageResult {
    save(&state, ctx, &db, None, &form).await
}

async fn edit(
    State(state): State<AppState>,
    ctx: Ctx,
    db: Db,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    save(&state, ctx, &db, Some(id), &form).await
}

/// What the webhook form posted, as typed (to show it again with an error).
struct Posted {
    name: String,
    url: String,
    events: Vec<String>,
    headers: String,
    /// Absent (a portal's form, or a client that does not post it): an
    /// edit leaves the tenant as it is; blank: the platform.
    tenant: Option<String>,
    /// Absent (a client that does not know the field): left as it is.
    rate_limit: Option<String>,
    ordered: bool,
    /// Absent: left as it is (`skip` for a new webhook).
    ordering_policy: Option<String>,
}

impl Posted {
    fn read(body: &Form) -> Posted {
        let mut events = crate::http::all(&body.0, "events");
        events.extend(
            body.text("patterns")
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
        );
        Posted {
            name: body.text("name"),
            url: body.text("url").trim().to_owned(),
            events,
            headers: body.text("headers"),
            tenant: body.first("tenant").map(|t| t.trim().to_owned()),
            rate_limit: body.first("rate_limit").map(str::to_owned),
            // An unchecked box is not posted at all.
            ordered: body.first("ordered").is_some(),
            ordering_policy: body.first("ordering_policy").map(str::to_owned),
        }
    }
}

/// What a saved form did.
enum Saved {
    Added(webhooks::Created),
    Edited(Vec<String>),
}

async fn save(
    state: &AppState,
    ctx: Ctx,
    client: &Client,
    id: Option<i64>,
    body: &Form,
) -> PageResult {
    let posted = Posted::read(body);
    match write(state, &ctx, client, id, &posted).await {
        Ok(Saved::Added(created)) => Ok(render(StatusCode::OK, &Secret {
            l: ctx.warn(&created.warnings).l,
            heading: "Webhook added".into(),
            id: created.id,
            name: created.webhook.name,
            secret: created.secret,
            note: "Events of the chosen types are delivered from now on; send a test event to check the endpoint.".into(),
        })),
        Ok(Saved::Edited(warnings)) => {
            let id = id.unwrap_or_default();
            list_page(
                ctx.warn(&warnings).notice(format!("Webhook {id} saved.")),
                client,
            )
            .await
        }
        Err(Error::Invalid { field, message }) => {
            let mut form = WebhookForm::new(ctx.l, id);
            let events = posted.events.clone();
            form.fill(posted);
            match field {
                "name" => form.err_name = Some(message),
                "url" => form.err_url = Some(message),
                "headers" => form.err_headers = Some(message),
                "tenant" => form.err_tenant = Some(message),
                "rate_limit" => form.err_rate_limit = Some(message),
                "ordered" => form.err_ordered = Some(message),
                "ordering_policy" => form.err_ordering_policy = Some(message),
                _ => form.err_events = Some(message),
            }
            let form = form.with_catalog(client, &events).await?;
            Ok(render(StatusCode::BAD_REQUEST, &form))
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks and writes what the form posted: a new webhook, or an edit
/// checked as the webhook it makes (under the rules of the tenant it will
/// belong to, whoever edits it). A portal's webhook is always its own.
async fn write(
    state: &AppState,
    ctx: &Ctx,
    client: &Client,
    id: Option<i64>,
    posted: &Posted,
) -> Result<Saved, Error> {
    let headers = parse_headers(&posted.headers)?;
    let rate_limit = posted
        .rate_limit
        .as_deref()
        .map(|r| validate::rate_limit_text(r).map(|n| n.map(i64::from)))
        .transpose()?;
    // None: not posted (kept as it is); Some(None): blank (the platform's).
    let form_tenant = posted
        .tenant
        .clone()
        .map(|t| Some(t).filter(|t| !t.is_empty()));
    let rules = &state.portal.rules;
    let change = WebhookChange {
        name: Some(posted.name.clone()),
        url: Some(posted.url.clone()),
        events: Some(posted.events.clone()),
        headers: Some(headers),
        tenant: match ctx.caller.tenant() {
            Some(_) => None,
            None => form_tenant.clone(),
        },
        rate_limit,
        ordered: Some(posted.ordered),
        ordering_policy: posted.ordering_policy.clone(),
    };
    let Some(id) = id else {
        let input = WebhookInput {
            name: posted.name.clone(),
            url: posted.url.clone(),
            events: posted.events.clone(),
            headers: change.headers.clone().unwrap_or_default(),
            tenant: match ctx.caller.tenant() {
                Some(t) => Some(t.to_owned()),
                None => form_tenant.flatten(),
            },
            rate_limit: change.rate_limit,
            ordered: change.ordered,
            ordering_policy: change.ordering_policy,
        };
        let checked = input.check_with(rules)?;
        webhooks::require_catalogued(client, &checked.event_types).await?;
        let targets = state.targets_for(checked.tenant.as_deref());
        return Ok(Saved::Added(
            webhooks::create_with(client, checked, &targets, rules).await?,
        ));
    };
    let checked = webhooks::edited(client, id, change, rules).await?;
    webhooks::require_catalogued(client, &checked.event_types).await?;
    webhooks::update(client, id, &checked, rules).await?;
    let targets = state.targets_for(checked.tenant.as_deref());
    Ok(Saved::Edited(webhooks::warnings(&checked, &targets).await))
}

async fn enable(ctx: Ctx, db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let (hook, changed) = webhooks::enable(&db, id).await?;
    let note = if changed {
        format!("{hook} enabled: new events reach it again.")
    } else {
        format!("{hook} is enabled already.")
    };
    list_page(ctx.notice(note), &db).await
}

async fn disable(ctx: Ctx, mut db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let note = match webhooks::disable(&mut db, id, "disabled in the admin console").await? {
        (hook, Some(n)) => format!("{hook} disabled; {n} waiting deliveries cancelled."),
        (hook, None) => format!("{hook} is disabled already."),
    };
    list_page(ctx.notice(note), &db).await
}

async fn rotate_secret(ctx: Ctx, db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let hook = webhooks::get(&db, id).await?;
    let r = webhooks::rotate_secret(&db, id, Duration::from_secs(24 * 3600)).await?;
    let note = match r.previous_secret_expires_at {
        Some(t) => format!("Until {} UTC requests carry two signatures, by the new and by the old secret; give the receiver the new secret before then.", time(t)),
        None => "The old secret no longer signs.".into(),
    };
    Ok(render(
        StatusCode::OK,
        &Secret {
            l: ctx.l,
            heading: "New secret".into(),
            id,
            name: hook.name,
            secret: r.secret,
            note,
        },
    ))
}

async fn confirm_delete(ctx: Ctx, db: Db, Path(id): Path<String>) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let w = webhooks::get(&db, id).await?;
    Ok(render(
        StatusCode::OK,
        &ConfirmDelete {
            l: ctx.l,
            id: w.id,
            name: w.name,
            url: w.url,
        },
    ))
}

async fn delete(ctx: Ctx, mut db: Db, Path(id): Path<String>, _: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let (hook, n) = webhooks::remove(&mut db, id).await?;
    list_page(
        ctx.notice(format!("{hook} deleted; {n} waiting deliveries cancelled.")),
        &db,
    )
    .await
}

/// The request goes out with no database connection held (see
/// `test_event::send`).
async fn send_test(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    form: Form,
) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook_in(&state.pool, id).await?;
    let event_type =
        crate::http::non_blank(&form.0, "event_type").unwrap_or(test_event::DEFAULT_EVENT_TYPE);
    let r = test_event::send(
        &state.pool,
        &state.http,
        id,
        event_type,
        state.request_timeout,
    )
    .await?;
    let body = r
        .response_body
        .as_deref()
        .map(|b| head(b, 1024))
        .unwrap_or_else(|| "(none)".into());
    Ok(render(
        StatusCode::OK,
        &TestResultPage {
            l: ctx.l,
            name: r.webhook.name.clone(),
            success: r.success,
            failure: r.failure.clone().unwrap_or_default(),
            event_type: r.event_type.clone(),
            url: r.url.clone(),
            status: match (&r.status_line, &r.error) {
                (Some(s), _) => s.clone(),
                (None, Some(e)) => format!("no response: {e}"),
                (None, None) => "no response".into(),
            },
            latency: format!("{:.1} ms", r.latency_ms),
            body,
            delivery_id: r.delivery_id,
        },
    ))
}

async fn replay_failed(ctx: Ctx, db: Db, Path(id): Path<String>, form: Form) -> PageResult {
    let id = id_of(&id)?;
    ctx.caller.owns_webhook(&db, id).await?;
    let since = validate::since(form.first("since").unwrap_or(""))?;
    let since = outboxd_admin::since_time(&db, &since).await?;
    let n = replay::webhook(&db, id, since, replay::Which::Failed).await?;
    let note = format!(
        "{n} failed deliveries of webhook {id} created since {} UTC replayed.",
        time(since)
    );
    list_page(ctx.notice(note), &db).await
}

/// `Name: value` lines, as the form's textarea holds them.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>, Error> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| Error::invalid("headers", format!("{l:?}: expected Name: value")))
        })
        .collect()
}

fn headers_text(headers: &serde_json::Value) -> String {
    headers
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct Webhooks {
    l: Layout,
    rows: Vec<WebhookRow>,
    event_types: Vec<String>,
}

struct WebhookRow {
    id: i64,
    name: String,
    url: String,
    events: String,
    enabled: bool,
    state: String,
    state_class: &'static str,
    success: String,
    last: String,
    pending: i64,
    tenant: Option<String>,
    rate_limit: String,
    ordering: String,
    /// Ordered under halt: its halted keys are worth a link.
    halts: bool,
}

impl From<WebhookSummary> for WebhookRow {
    fn from(w: WebhookSummary) -> WebhookRow {
        let health = w.health();
        // The stylesheet colours a failing webhook as a paused one.
        let state_class = match health {
            webhooks::Health::Failing { .. } => "paused",
            _ => health.as_str(),
        };
        let state = health.to_string();
        WebhookRow {
            id: w.id,
            events: w.event_types.join(", "),
            enabled: w.enabled,
            success: match w.success_rate_last_hour {
                Some(r) => format!("{:.0}% of {}", r * 100.0, w.attempts_last_hour),
                None => "-".into(),
            },
            last: match (w.last_attempt_age_seconds, &w.last_outcome) {
                (Some(a), Some(o)) => format!("{} ago, {o}", age(a)),
                _ => "never".into(),
            },
            pending: w.pending,
            rate_limit: match w.rate_limit {
                Some(n) => format!("{n} requests/s"),
                None => "no limit".into(),
            },
            halts: w.ordered && w.ordering_policy == "halt",
            ordering: match (w.ordered, w.ordering_policy.as_str()) {
                (false, _) => "unordered".into(),
                (true, "halt") => "per key; a failed event halts its key".into(),
                (true, _) => "per key; a failed event is skipped".into(),
            },
            tenant: w.tenant,
            name: w.name,
            url: w.url,
            state,
            state_class,
        }
    }
}

#[derive(Template)]
#[template(path = "webhook_form.html")]
struct WebhookForm {
    l: Layout,
    title: String,
    action: String,
    submit: String,
    name: String,
    url: String,
    catalog: Vec<CatalogOption>,
    catalog_size: usize,
    patterns: String,
    headers: String,
    tenant: String,
    rate_limit: String,
    ordered: bool,
    ordering_policy: String,
    err_name: Option<String>,
    err_url: Option<String>,
    err_events: Option<String>,
    err_headers: Option<String>,
    err_tenant: Option<String>,
    err_rate_limit: Option<String>,
    err_ordered: Option<String>,
    err_ordering_policy: Option<String>,
}

struct CatalogOption {
    name: String,
    description: String,
    example: String,
    selected: bool,
}

impl WebhookForm {
    /// The add form (`editing` None) or the edit form of a webhook.
    fn new(l: Layout, editing: Option<i64>) -> WebhookForm {
        let (title, action, submit) = match editing {
            None => ("Add New Webhook", "/webhooks/new".to_owned(), "Add webhook"),
            Some(id) => ("Edit webhook", format!("/webhooks/{id}/edit"), "Save"),
        };
        WebhookForm {
            l,
            title: title.into(),
            action,
            submit: submit.into(),
            name: String::new(),
            url: String::new(),
            catalog: Vec::new(),
            catalog_size: 4,
            patterns: String::new(),
            headers: String::new(),
            tenant: String::new(),
            rate_limit: String::new(),
            ordered: false,
            ordering_policy: "skip".into(),
            err_name: None,
            err_url: None,
            err_events: None,
            err_headers: None,
            err_tenant: None,
            err_rate_limit: None,
            err_ordered: None,
            err_ordering_policy: None,
        }
    }

    /// The fields as they were posted.
    fn fill(&mut self, posted: Posted) {
        self.name = posted.name;
        self.url = posted.url;
        self.headers = posted.headers;
        self.tenant = posted.tenant.unwrap_or_default();
        self.rate_limit = posted.rate_limit.unwrap_or_default();
        self.ordered = posted.ordered;
        self.ordering_policy = posted.ordering_policy.unwrap_or_else(|| "skip".into());
    }

    /// The catalog as options, `chosen` selected; chosen patterns that are
    /// not catalog entries go to the free pattern field.
    async fn with_catalog(
        mut self,
        client: &Client,
        chosen: &[String],
    ) -> Result<WebhookForm, Error> {
        let types = event_types::list(client).await?;
        self.patterns = chosen
            .iter()
            .filter(|c| !types.iter().any(|t| &t.name == *c))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        self.catalog = types
            .into_iter()
            .map(|t| CatalogOption {
                selected: chosen.contains(&t.name),
                example: t.example_payload.pretty(),
                name: t.name,
                description: t.description,
            })
            .collect();
        self.catalog_size = self.catalog.len().clamp(2, 10);
        Ok(self)
    }
}

#[derive(Template)]
#[template(path = "secret.html")]
struct Secret {
    l: Layout,
    heading: String,
    id: i64,
    name: String,
    secret: String,
    note: String,
}

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete {
    l: Layout,
    id: i64,
    name: String,
    url: String,
}

#[derive(Template)]
#[template(path = "test_result.html")]
struct TestResultPage {
    l: Layout,
    name: String,
    success: bool,
    failure: String,
    event_type: String,
    url: String,
    status: String,
    latency: String,
    body: String,
    delivery_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_are_name_colon_value() {
        let h = parse_headers("X-Tenant: acme\n\n authorization: Bearer a:b \n").unwrap();
        assert_eq!(
            h,
            [
                ("X-Tenant".to_owned(), "acme".to_owned()),
                ("authorization".to_owned(), "Bearer a:b".to_owned())
            ]
        );
        assert!(matches!(
            parse_headers("no colon"),
            Err(Error::Invalid {
                field: "headers",
                ..
            })
        ));
        let back = headers_text(&serde_json::json!({"x-tenant": "acme"}));
        assert_eq!(back, "x-tenant: acme");
    }
}
