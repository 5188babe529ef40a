//! The console's HTML screens: overview, webhooks (add, edit, enable,
//! disable, rotate the secret, delete, send a test event, replay failures),
//! the delivery log with one delivery's attempts, and the event catalog.
//!
//! Server-rendered with askama (templates checked at compile time, output
//! HTML-escaped), no JavaScript. Every POST must carry the session's CSRF
//! token and come from this origin; a POST answers with the page that shows
//! its result, so an admin sees at once what happened.

use askama::Template;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use outboxd_admin::deliveries::{self, Delivery};
use outboxd_admin::format::{age, time};
use outboxd_admin::webhooks::{self, WebhookInput, WebhookSummary};
use outboxd_admin::{event_types, replay, stats, test_event, validate, Error};
use outboxd_core::DeliveryState;
use tokio_postgres::Client;

use crate::auth::{self, Session};
use crate::http::{self, Body};
use crate::{status_of, State};

const CSS: &str = include_str!("console.css");

/// What every page's layout needs.
pub(crate) struct Layout {
    csrf: String,
    logout: bool,
    notice: Option<String>,
    /// Something saved that may not work as meant (a URL the SSRF guard refuses).
    warning: Option<String>,
    error: Option<String>,
}

type Pairs = Vec<(String, String)>;

pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let host = http::header(&req, "host").map(str::to_owned);
    if method == Method::GET && path == "/static/console.css" {
        return http::css(CSS);
    }
    if !state.auth.requires_login() && !auth::loopback_host(host.as_deref()) {
        return http::text(
            StatusCode::FORBIDDEN,
            "without OUTBOXD_ADMIN_TOKEN the console answers loopback names only\n",
        );
    }
    if method == Method::POST
        && !auth::same_origin(
            http::header(&req, "origin"),
            http::header(&req, "sec-fetch-site"),
            host.as_deref(),
        )
    {
        return http::text(
            StatusCode::FORBIDDEN,
            "cross-origin form posts are refused\n",
        );
    }
    let session = state.auth.session(http::header(&req, "cookie"));
    let query = http::pairs(req.uri().query().unwrap_or("").as_bytes());
    let body = if method == Method::POST {
        match http::read_body(req).await {
            Some(b) => http::pairs(&b),
            None => return http::text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"),
        }
    } else {
        Vec::new()
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => return login_page(state, None, StatusCode::OK),
        (&Method::POST, "/login") => return login(state, &body),
        _ => {}
    }
    // A session from here on: logged in, or (no token, loopback) made now.
    let (session, new_cookie) = match session {
        Some(s) => (s, None),
        None if state.auth.requires_login() || method == Method::POST => {
            return if method == Method::POST {
                http::text(
                    StatusCode::FORBIDDEN,
                    "no session: the CSRF check failed; reload the page\n",
                )
            } else {
                http::redirect("/login")
            };
        }
        None => {
            let s = state.auth.new_session();
            let cookie = state.auth.cookie_value(&s);
            (s, Some(cookie))
        }
    };
    if method == Method::POST && !state.auth.csrf_ok(&session, http::first(&body, "csrf")) {
        return http::text(
            StatusCode::FORBIDDEN,
            "the CSRF token is missing or wrong; reload the page and try again\n",
        );
    }
    if method == Method::POST && path == "/logout" {
        let mut r = http::redirect("/login");
        if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        return r;
    }
    let layout = Layout {
        csrf: state.auth.csrf_token(&session),
        logout: state.auth.requires_login(),
        notice: None,
        warning: None,
        error: None,
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let page = Page {
        state,
        layout,
        query: &query,
        body: &body,
    };
    // A test event takes a connection only around its request, not for it.
    let routed = if let (&Method::POST, ["webhooks", id, "test"]) = (&method, segments.as_slice()) {
        page.test_event(id).await
    } else {
        let mut client = match state.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "admin console: database unavailable");
                return http::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; try again shortly\n",
                );
            }
        };
        page.route(&mut client, &method, &segments).await
    };
    let mut response = match routed {
        Ok(r) => r,
        Err(e) => {
            let status = status_of(&e);
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "admin console request failed");
            }
            render(
                status,
                &Message {
                    l: error_layout(state, &session, e.to_string()),
                    heading: "Something went wrong".into(),
                    back: "/".into(),
                },
            )
        }
    };
    if let Some(cookie) = new_cookie {
        if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&cookie)) {
            response.headers_mut().insert(SET_COOKIE, v);
        }
    }
    response
}

fn error_layout(state: &State, session: &Session, error: String) -> Layout {
    Layout {
        csrf: state.auth.csrf_token(session),
        logout: state.auth.requires_login(),
        notice: None,
        warning: None,
        error: Some(error),
    }
}

fn render<T: Template>(status: StatusCode, t: &T) -> Response<Body> {
    match t.render() {
        Ok(html) => http::html(status, html),
        Err(e) => {
            tracing::error!(error = %e, "admin console: rendering failed");
            http::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering the page failed\n",
            )
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    error: Option<String>,
}

fn login_page(state: &State, error: Option<String>, status: StatusCode) -> Response<Body> {
    if !state.auth.requires_login() {
        return http::redirect("/");
    }
    render(status, &Login { error })
}

fn login(state: &State, body: &Pairs) -> Response<Body> {
    if !state.auth.requires_login() {
        return http::redirect("/");
    }
    let given = http::first(body, "token").unwrap_or("").trim();
    if !state.auth.token_matches(given) {
        return login_page(
            state,
            Some("That is the wrong token.".into()),
            StatusCode::UNAUTHORIZED,
        );
    }
    let session = state.auth.new_session();
    let mut r = http::redirect("/");
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&state.auth.cookie_value(&session))) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message {
    l: Layout,
    heading: String,
    back: String,
}

struct Page<'a> {
    state: &'a State,
    layout: Layout,
    query: &'a Pairs,
    body: &'a Pairs,
}

type PageResult = Result<Response<Body>, Error>;

impl Page<'_> {
    async fn route(self, client: &mut Client, method: &Method, segments: &[&str]) -> PageResult {
        use Method as M;
        match (method, segments) {
            (&M::GET, []) => self.overview(client).await,
            (&M::GET, ["webhooks"]) => self.webhooks(client, StatusCode::OK).await,
            (&M::GET, ["webhooks", "new"]) => {
                let form = WebhookForm::new(
                    self.layout,
                    "Add New Webhook",
                    "/webhooks/new",
                    "Add webhook",
                );
                form.with_catalog(client, &[])
                    .await
                    .map(|f| render(StatusCode::OK, &f))
            }
            (&M::POST, ["webhooks", "new"]) => self.save_webhook(client, None).await,
            (&M::GET, ["webhooks", id, "edit"]) => {
                let w = webhooks::get(client, id_of(id)?).await?;
                let mut form = WebhookForm::new(
                    self.layout,
                    "Edit webhook",
                    &format!("/webhooks/{}/edit", w.id),
                    "Save",
                );
                form.name = w.name.clone();
                form.url = w.url.clone();
                form.headers = headers_text(&w.headers);
                form.with_catalog(client, &w.event_types)
                    .await
                    .map(|f| render(StatusCode::OK, &f))
            }
            (&M::POST, ["webhooks", id, "edit"]) => {
                self.save_webhook(client, Some(id_of(id)?)).await
            }
            (&M::POST, ["webhooks", id, "enable"]) => {
                let (hook, changed) = webhooks::enable(client, id_of(id)?).await?;
                let note = if changed {
                    format!("{hook} enabled: new events reach it again.")
                } else {
                    format!("{hook} is enabled already.")
                };
                self.notice(note).webhooks(client, StatusCode::OK).await
            }
            (&M::POST, ["webhooks", id, "disable"]) => {
                let note =
                    match webhooks::disable(client, id_of(id)?, "disabled in the admin console")
                        .await?
                    {
                        (hook, Some(n)) => {
                            format!("{hook} disabled; {n} waiting deliveries cancelled.")
                        }
                        (hook, None) => format!("{hook} is disabled already."),
                    };
                self.notice(note).webhooks(client, StatusCode::OK).await
            }
            (&M::POST, ["webhooks", id, "rotate-secret"]) => {
                let id = id_of(id)?;
                let hook = webhooks::get(client, id).await?;
                let r =
                    webhooks::rotate_secret(client, id, std::time::Duration::from_secs(24 * 3600))
                        .await?;
                let note = match r.previous_secret_expires_at {
                    Some(t) => format!("Until {} UTC requests carry two signatures, by the new and by the old secret; give the receiver the new secret before then.", time(t)),
                    None => "The old secret no longer signs.".into(),
                };
                Ok(render(
                    StatusCode::OK,
                    &Secret {
                        l: self.layout,
                        heading: "New secret".into(),
                        id,
                        name: hook.name,
                        secret: r.secret,
                        note,
                    },
                ))
            }
            (&M::GET, ["webhooks", id, "delete"]) => {
                let w = webhooks::get(client, id_of(id)?).await?;
                Ok(render(
                    StatusCode::OK,
                    &ConfirmDelete {
                        l: self.layout,
                        id: w.id,
                        name: w.name,
                        url: w.url,
                    },
                ))
            }
            (&M::POST, ["webhooks", id, "delete"]) => {
                let (hook, n) = webhooks::remove(client, id_of(id)?).await?;
                self.notice(format!("{hook} deleted; {n} waiting deliveries cancelled."))
                    .webhooks(client, StatusCode::OK)
                    .await
            }
            (&M::POST, ["webhooks", id, "test"]) => self.test_event(id).await,
            (&M::POST, ["webhooks", id, "replay-failed"]) => {
                let id = id_of(id)?;
                let since = validate::since(http::first(self.body, "since").unwrap_or(""))?;
                let since = outboxd_admin::since_time(client, &since).await?;
                let n = replay::webhook(client, id, since, replay::Which::Failed).await?;
                self.notice(format!(
                    "{n} failed deliveries of webhook {id} created since {} UTC replayed.",
                    time(since)
                ))
                .webhooks(client, StatusCode::OK)
                .await
            }
            (&M::GET, ["deliveries"]) => self.deliveries(client).await,
            (&M::GET, ["deliveries", id]) => self.delivery(client, id_of(id)?).await,
            (&M::POST, ["deliveries", id, "replay"]) => {
                let id = id_of(id)?;
                let r = replay::delivery(client, id).await?;
                let note = if r.replayed == 0 {
                    format!(
                        "Delivery {id} is {} already; nothing to replay.",
                        r.previous_state
                    )
                } else {
                    format!("Delivery {id} replayed: pending again with a fresh attempt budget.")
                };
                self.notice(note).delivery(client, id).await
            }
            (&M::GET, ["event-types"]) => self.event_types(client).await,
            (&M::GET, ["event-types", "new"]) => Ok(render(
                StatusCode::OK,
                &EventTypeForm::new(self.layout, None),
            )),
            (&M::POST, ["event-types", "new"]) => self.save_event_type(client, None).await,
            (&M::GET, ["event-types", name, "edit"]) => {
                let t = event_types::get(client, name).await?;
                let mut form = EventTypeForm::new(self.layout, Some(name));
                form.description = t.description;
                form.example = t.example_payload.pretty();
                Ok(render(StatusCode::OK, &form))
            }
            (&M::POST, ["event-types", name, "edit"]) => {
                self.save_event_type(client, Some(name)).await
            }
            _ => Err(Error::NotFound("no such page".into())),
        }
    }

    fn notice(mut self, note: String) -> Self {
        self.layout.notice = Some(note);
        self
    }

    fn warn(mut self, warnings: &[String]) -> Self {
        if !warnings.is_empty() {
            self.layout.warning = Some(warnings.join(" "));
        }
        self
    }

    async fn overview(self, client: &Client) -> PageResult {
        let s = stats::stats(client).await?;
        let disabled = s
            .webhooks
            .iter()
            .filter(|w| !w.enabled)
            .map(|w| DisabledRow {
                id: w.id,
                name: w.name.clone(),
                since: w.disabled_at.map(time).unwrap_or_default(),
                reason: w
                    .disabled_reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into()),
            })
            .collect();
        Ok(render(
            StatusCode::OK,
            &Overview {
                l: self.layout,
                pending: s.deliveries_pending,
                events_pending: s.events_pending,
                oldest_pending: s
                    .oldest_pending_event_age_seconds
                    .map(age)
                    .unwrap_or_else(|| "-".into()),
                attempts_last_hour: s.attempts_last_hour,
                failure_ratio: percent(s.failure_ratio_last_hour),
                disabled,
            },
        ))
    }

    async fn webhooks(self, client: &Client, status: StatusCode) -> PageResult {
        let rows = webhooks::list(client)
            .await?
            .into_iter()
            .map(WebhookRow::from)
            .collect();
        let mut types: Vec<String> = event_types::list(client)
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        types.push(test_event::DEFAULT_EVENT_TYPE.into());
        Ok(render(
            status,
            &Webhooks {
                l: self.layout,
                rows,
                event_types: types,
            },
        ))
    }

    async fn save_webhook(self, client: &Client, id: Option<i64>) -> PageResult {
        let mut events = http::all(self.body, "events");
        let patterns = http::first(self.body, "patterns").unwrap_or("").to_owned();
        events.extend(
            patterns
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty()),
        );
        let headers_text = http::first(self.body, "headers").unwrap_or("").to_owned();
        let input = WebhookInput {
            name: http::first(self.body, "name").unwrap_or("").to_owned(),
            url: http::first(self.body, "url")
                .unwrap_or("")
                .trim()
                .to_owned(),
            events: events.clone(),
            headers: Vec::new(),
            // The form does not set limits yet: an edit keeps the current one.
            rate_limit: None,
        };
        let (title, action, submit) = match id {
            None => (
                "Add New Webhook".to_owned(),
                "/webhooks/new".to_owned(),
                "Add webhook",
            ),
            Some(id) => (
                "Edit webhook".to_owned(),
                format!("/webhooks/{id}/edit"),
                "Save",
            ),
        };
        let checked = match parse_headers(&headers_text).and_then(|headers| {
            WebhookInput {
                headers,
                ..input.clone()
            }
            .check()
        }) {
            Ok(c) => webhooks::require_catalogued(client, &c.event_types)
                .await
                .map(|_| c),
            Err(e) => Err(e),
        };
        let checked = match checked {
            Ok(c) => c,
            Err(Error::Invalid { field, message }) => {
                let mut form = WebhookForm::new(self.layout, &title, &action, submit);
                form.name = input.name;
                form.url = input.url;
                form.headers = headers_text;
                match field {
                    "name" => form.err_name = Some(message),
                    "url" => form.err_url = Some(message),
                    "headers" => form.err_headers = Some(message),
                    _ => form.err_events = Some(message),
                }
                let form = form.with_catalog(client, &events).await?;
                return Ok(render(StatusCode::BAD_REQUEST, &form));
            }
            Err(e) => return Err(e),
        };
        match id {
            None => {
                let created = webhooks::create(client, checked, &self.state.targets).await?;
                Ok(render(StatusCode::OK, &Secret {
                    l: self.warn(&created.warnings).layout,
                    heading: "Webhook added".into(),
                    id: created.id,
                    name: created.webhook.name,
                    secret: created.secret,
                    note: "Events of the chosen types are delivered from now on; send a test event to check the endpoint.".into(),
                }))
            }
            Some(id) => {
                let warnings = webhooks::update(client, id, &checked, &self.state.targets).await?;
                self.warn(&warnings)
                    .notice(format!("Webhook {id} saved."))
                    .webhooks(client, StatusCode::OK)
                    .await
            }
        }
    }

    async fn test_event(self, id: &str) -> PageResult {
        let event_type =
            http::non_blank(self.body, "event_type").unwrap_or(test_event::DEFAULT_EVENT_TYPE);
        let r = test_event::send(
            &self.state.pool,
            &self.state.http,
            id_of(id)?,
            event_type,
            self.state.request_timeout,
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
                l: self.layout,
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

    async fn deliveries(self, client: &Client) -> PageResult {
        let filter = crate::api::log_filter(client, self.query).await;
        let (filter, error) = match filter {
            Ok(f) => (f, None),
            Err(e @ Error::Invalid { .. }) => (
                deliveries::LogFilter {
                    limit: 100,
                    ..Default::default()
                },
                Some(e.to_string()),
            ),
            Err(e) => return Err(e),
        };
        let filter = deliveries::LogFilter {
            limit: if filter.limit == 50 {
                100
            } else {
                filter.limit
            },
            ..filter
        };
        let (rows, error) = match deliveries::log(client, &filter).await {
            Ok(rows) => (rows, error),
            Err(e @ Error::Invalid { .. }) => (Vec::new(), Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let hooks = webhooks::list(client).await?;
        let q = |n: &str| http::first(self.query, n).unwrap_or("").to_owned();
        let chosen_hook = q("webhook_id");
        let chosen_state = q("state");
        let mut l = self.layout;
        l.error = error;
        Ok(render(
            StatusCode::OK,
            &DeliveriesPage {
                l,
                webhooks: hooks
                    .iter()
                    .map(|w| Choice {
                        value: w.id.to_string(),
                        label: format!("{} #{}", w.name, w.id),
                        selected: w.id.to_string() == chosen_hook,
                    })
                    .collect(),
                states: DeliveryState::ALL
                    .iter()
                    .map(|s| Choice {
                        value: s.to_string(),
                        label: s.to_string(),
                        selected: s.as_str() == chosen_state,
                    })
                    .collect(),
                event_type: q("event_type"),
                since: q("since"),
                rows: rows.into_iter().map(LogLine::from).collect(),
            },
        ))
    }

    async fn delivery(self, client: &Client, id: i64) -> PageResult {
        let d = deliveries::show(client, id).await?;
        let headers = request_headers(client, &d).await;
        Ok(render(
            StatusCode::OK,
            &DeliveryPage::new(self.layout, d, headers),
        ))
    }

    async fn event_types(self, client: &Client) -> PageResult {
        let rows = event_types::list(client)
            .await?
            .into_iter()
            .map(|t| CatalogRow {
                example: t.example_payload.pretty(),
                name: t.name,
                description: t.description,
                webhooks: t.subscribed_webhooks,
            })
            .collect();
        Ok(render(
            StatusCode::OK,
            &EventTypes {
                l: self.layout,
                rows,
            },
        ))
    }

    async fn save_event_type(self, client: &Client, editing: Option<&str>) -> PageResult {
        let name = editing.map(str::to_owned).unwrap_or_else(|| {
            http::first(self.body, "name")
                .unwrap_or("")
                .trim()
                .to_owned()
        });
        let description = http::first(self.body, "description")
            .unwrap_or("")
            .trim()
            .to_owned();
        let example_text = http::first(self.body, "example")
            .unwrap_or("")
            .trim()
            .to_owned();
        let example = if example_text.is_empty() {
            Ok(None)
        } else {
            validate::json("example", &example_text).map(Some)
        };
        let result = match example {
            Ok(ex) => {
                event_types::upsert(client, &name, &description, ex.as_ref(), editing.is_some())
                    .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                let note = format!("{name} saved in the catalog.");
                self.notice(note).event_types(client).await
            }
            Err(e @ (Error::Invalid { .. } | Error::Conflict(_))) => {
                let mut form = EventTypeForm::new(self.layout, editing);
                form.name = name;
                form.description = description;
                form.example = example_text;
                match e {
                    Error::Invalid {
                        field: "example",
                        message,
                    } => form.err_example = Some(message),
                    other => form.err_name = Some(other.to_string()),
                }
                Ok(render(StatusCode::BAD_REQUEST, &form))
            }
            Err(e) => Err(e),
        }
    }
}

fn id_of(s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::NotFound("no such page".into()))
}

fn percent(r: Option<f64>) -> String {
    r.map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn head(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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

/// Header names whose values are credentials, shown redacted.
fn is_sensitive(name: &str) -> bool {
    [
        "auth",
        "token",
        "secret",
        "key",
        "cookie",
        "password",
        "signature",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The headers the next attempt of `d` sends, built by the deliverer's own
/// request builder, with the signature, the webhook's custom headers and
/// anything named like a credential redacted.
async fn request_headers(client: &Client, d: &Delivery) -> Vec<(String, String)> {
    let Ok(Some(webhook)) = outboxd_db::webhooks::load_one(client, d.webhook_id).await else {
        return Vec::new();
    };
    let claimed = outboxd_db::Claimed {
        delivery_id: d.id,
        lease: 0,
        attempt: d.attempts + 1,
        event_id: d.event_id,
        webhook_id: d.webhook_id,
        event_type: d.event_type.clone().unwrap_or_default(),
        payload: d
            .payload
            .as_ref()
            .map(|p| p.text().to_owned())
            .unwrap_or_else(|| "null".into())
            .into(),
        created_at: d.event_created_at.unwrap_or(d.created_at),
    };
    let ts = d
        .attempt_log
        .last()
        .map(|a| a.started_at)
        .unwrap_or(d.created_at)
        .timestamp();
    match outboxd_deliverer::request::build(&webhook, &claimed, ts) {
        Ok(req) => req
            .headers()
            .iter()
            .map(|(n, v)| {
                let name = n.as_str().to_owned();
                let custom = webhook.headers.iter().any(|(n, _)| *n == name);
                let value = if custom || is_sensitive(&name) {
                    "(redacted)".to_owned()
                } else {
                    v.to_str().unwrap_or("(binary)").to_owned()
                };
                (name, value)
            })
            .collect(),
        Err(e) => vec![("(not buildable)".into(), e.to_string())],
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    l: Layout,
    pending: i64,
    events_pending: i64,
    oldest_pending: String,
    attempts_last_hour: i64,
    failure_ratio: String,
    disabled: Vec<DisabledRow>,
}

struct DisabledRow {
    id: i64,
    name: String,
    since: String,
    reason: String,
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
    err_name: Option<String>,
    err_url: Option<String>,
    err_events: Option<String>,
    err_headers: Option<String>,
}

struct CatalogOption {
    name: String,
    description: String,
    selected: bool,
}

impl WebhookForm {
    fn new(l: Layout, title: &str, action: &str, submit: &str) -> WebhookForm {
        WebhookForm {
            l,
            title: title.into(),
            action: action.into(),
            submit: submit.into(),
            name: String::new(),
            url: String::new(),
            catalog: Vec::new(),
            catalog_size: 4,
            patterns: String::new(),
            headers: String::new(),
            err_name: None,
            err_url: None,
            err_events: None,
            err_headers: None,
        }
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

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    l: Layout,
    webhooks: Vec<Choice>,
    states: Vec<Choice>,
    event_type: String,
    since: String,
    rows: Vec<LogLine>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn status_or_error(status: Option<i32>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), Some(e)) => format!("{s} ({e})"),
        (Some(s), None) => s.to_string(),
        (None, Some(e)) => e.to_owned(),
        (None, None) => "-".into(),
    }
}

struct LogLine {
    time: String,
    delivery_id: i64,
    webhook: String,
    event_type: String,
    attempt: i32,
    status: String,
    ms: String,
    outcome: String,
    state: String,
}

impl From<deliveries::LogRow> for LogLine {
    fn from(r: deliveries::LogRow) -> LogLine {
        let mut event_type = r.event_type.clone().unwrap_or_else(|| "?".into());
        if r.is_test {
            event_type.push_str(" (test)");
        }
        LogLine {
            time: time(r.started_at),
            delivery_id: r.delivery_id,
            webhook: match &r.webhook_name {
                Some(n) => format!("{n} #{}", r.webhook_id),
                None => format!("#{} (removed)", r.webhook_id),
            },
            event_type,
            attempt: r.attempt,
            status: status_or_error(r.status_code, r.error.as_deref()),
            ms: format!("{:.1}", r.duration_ms),
            outcome: r.outcome,
            state: r
                .delivery_state
                .map_or_else(|| "-".into(), |s| s.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    l: Layout,
    id: i64,
    state: String,
    webhook: String,
    event: String,
    attempts: i32,
    next_attempt: String,
    last_error: String,
    payload: String,
    headers: Vec<(String, String)>,
    attempt_log: Vec<AttemptView>,
}

struct AttemptView {
    attempt: i32,
    time: String,
    ms: String,
    status: String,
    outcome: String,
    body: String,
}

impl DeliveryPage {
    fn new(l: Layout, d: Delivery, headers: Vec<(String, String)>) -> DeliveryPage {
        DeliveryPage {
            l,
            id: d.id,
            webhook: match (&d.webhook_name, &d.webhook_url) {
                (Some(n), Some(u)) => format!("{n} #{} ({u})", d.webhook_id),
                _ => format!("#{} (removed)", d.webhook_id),
            },
            event: format!(
                "{} {}{}, created {} UTC",
                d.event_id,
                d.event_type.as_deref().unwrap_or("?"),
                if d.is_test { " (test)" } else { "" },
                d.event_created_at.map(time).unwrap_or_else(|| "?".into())
            ),
            attempts: d.total_attempts,
            next_attempt: if d.state == DeliveryState::Pending {
                format!("{} UTC", time(d.next_attempt_at))
            } else {
                "-".into()
            },
            last_error: d.last_error.clone().unwrap_or_else(|| "-".into()),
            payload: d.payload.as_ref().map(|p| p.pretty()).unwrap_or_default(),
            headers,
            attempt_log: d
                .attempt_log
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    time: time(a.started_at),
                    ms: format!("{:.1}", a.duration_ms),
                    status: status_or_error(a.status_code, a.error.as_deref()),
                    outcome: a.outcome.clone(),
                    body: a
                        .response_body
                        .clone()
                        .unwrap_or_else(|| "(no response body)".into()),
                })
                .collect(),
            state: d.state.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "event_types.html")]
struct EventTypes {
    l: Layout,
    rows: Vec<CatalogRow>,
}

struct CatalogRow {
    name: String,
    description: String,
    example: String,
    webhooks: usize,
}

#[derive(Template)]
#[template(path = "event_type_form.html")]
struct EventTypeForm {
    l: Layout,
    title: String,
    action: String,
    editing: bool,
    name: String,
    description: String,
    example: String,
    err_name: Option<String>,
    err_example: Option<String>,
}

impl EventTypeForm {
    fn new(l: Layout, editing: Option<&str>) -> EventTypeForm {
        EventTypeForm {
            l,
            title: match editing {
                Some(n) => format!("Edit {n}"),
                None => "Add event type".into(),
            },
            action: match editing {
                Some(n) => format!("/event-types/{n}/edit"),
                None => "/event-types/new".into(),
            },
            editing: editing.is_some(),
            name: editing.unwrap_or_default().into(),
            description: String::new(),
            example: "{}".into(),
            err_name: None,
            err_example: None,
        }
    }
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

    #[test]
    fn credentials_are_redacted_by_name() {
        for name in [
            "authorization",
            "x-api-key",
            "webhook-signature",
            "x-auth-token",
            "cookie",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["content-type", "webhook-id", "x-tenant"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn bodies_are_cut_at_a_character_boundary() {
        assert_eq!(head("short", 10), "short");
        assert_eq!(head("héllo", 2), "h…");
        assert_eq!(percent(Some(0.25)), "25%");
        assert_eq!(percent(None), "-");
    }
}
