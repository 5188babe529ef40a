//! The console's HTML screens, one module per resource: overview, webhooks
//! (add, edit, enable, disable, rotate the secret, delete, send a test
//! event, replay failures), the delivery log with one delivery's attempts,
//! the halted ordering keys (replay or skip), the event catalog, and signing in and out.
//!
//! Server-rendered with askama (templates checked at compile time, output
//! HTML-escaped), no JavaScript. The guard has checked the session, the
//! origin and the CSRF token of every post before a handler runs; a post
//! answers with the page that shows its result, so an admin sees at once
//! what happened.

mod catalog;
mod deliveries;
mod halted_keys;
mod login;
mod overview;
mod portal;
mod tenants;
mod webhooks;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use outboxd_admin::Error;

use crate::auth::Session;
use crate::caller::{Caller, Forbidden};
use crate::http::{self, Pairs};
use crate::{status_of, AppState};

const CSS: &str = include_str!("../console.css");

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/static/console.css", get(|| async { http::css(CSS) }))
        .merge(login::router())
        .merge(overview::router())
        .merge(webhooks::router())
        .merge(deliveries::router())
        .merge(halted_keys::router())
        .merge(catalog::router())
        .merge(portal::router())
        .merge(tenants::router())
}

pub(crate) use portal::portal_headers;

/// What every page's layout needs.
pub(crate) struct Layout {
    csrf: String,
    logout: bool,
    notice: Option<String>,
    /// Something saved that may not work as meant (a URL the SSRF guard refuses).
    warning: Option<String>,
    error: Option<String>,
    /// Set on a tenant's portal: its look, and the admin's links hidden.
    portal: Option<PortalLook>,
}

/// A portal page's header.
pub(crate) struct PortalLook {
    name: String,
    logo_url: Option<String>,
    tenant: String,
}

/// A page request: its layout (made from the session the guard checked),
/// who is asking, and its query string.
pub(crate) struct Ctx {
    pub l: Layout,
    pub caller: Caller,
    pub query: Pairs,
}

impl Ctx {
    pub fn notice(mut self, note: String) -> Ctx {
        self.l.notice = Some(note);
        self
    }

    pub fn warn(mut self, warnings: &[String]) -> Ctx {
        if !warnings.is_empty() {
            self.l.warning = Some(warnings.join(" "));
        }
        self
    }

    /// The first value of a query parameter, or "".
    pub fn q(&self, name: &str) -> String {
        http::first(&self.query, name).unwrap_or("").to_owned()
    }
}

fn layout(state: &AppState, session: &Session) -> Layout {
    let theme = &state.portal.theme;
    Layout {
        csrf: state.auth.csrf_token(session),
        logout: state.auth.requires_login() || session.tenant.is_some(),
        notice: None,
        warning: None,
        error: None,
        portal: session.tenant.as_ref().map(|t| PortalLook {
            name: theme.name.clone().unwrap_or_else(|| "Webhooks".into()),
            logo_url: theme.logo_url.clone(),
            tenant: t.clone(),
        }),
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ctx, Response> {
        let Some(session) = parts.extensions.get::<Session>() else {
            return Err(http::redirect("/login"));
        };
        let query = parts.uri.query().unwrap_or_default();
        Ok(Ctx {
            l: layout(state, session),
            caller: match &session.tenant {
                Some(t) => Caller::Tenant(t.clone()),
                None => Caller::Admin,
            },
            query: http::pairs(query.as_bytes()),
        })
    }
}

/// The pairs of a posted form, read and CSRF-checked by the guard.
#[derive(Clone, Default)]
pub(crate) struct FormPairs(pub Pairs);

/// A posted form's fields.
pub(crate) struct Form(pub Pairs);

impl Form {
    pub fn first(&self, name: &str) -> Option<&str> {
        http::first(&self.0, name)
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> String {
        self.first(name).unwrap_or("").to_owned()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Form {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Form, Self::Rejection> {
        let pairs = parts.extensions.remove::<FormPairs>().unwrap_or_default();
        Ok(Form(pairs.0))
    }
}

/// A failed page operation. Its answer carries the failure for the guard,
/// which knows the session and renders the page saying what went wrong.
pub(crate) struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = status_of(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "admin console request failed");
        }
        Failure(status, e.to_string())
    }
}

impl From<Forbidden> for Failure {
    fn from(_: Forbidden) -> Failure {
        Failure(Forbidden::STATUS, Forbidden::MESSAGE.into())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        PageFailure::response(self.0, self.1)
    }
}

/// What went wrong, for the guard to show.
#[derive(Clone)]
pub(crate) struct PageFailure(pub StatusCode, pub String);

impl PageFailure {
    pub fn response(status: StatusCode, message: String) -> Response {
        let mut r = status.into_response();
        r.extensions_mut().insert(PageFailure(status, message));
        r
    }
}

pub(crate) type PageResult = Result<Response, Failure>;

#[derive(Template)]
#[template(path = "message.html")]
struct Message {
    l: Layout,
    heading: String,
    back: String,
}

/// The page saying what went wrong.
pub(crate) fn failure(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    message: String,
) -> Response {
    let mut l = layout(state, session);
    l.error = Some(message);
    render(
        status,
        &Message {
            l,
            heading: "Something went wrong".into(),
            back: "/".into(),
        },
    )
}

pub(crate) fn render<T: Template>(status: StatusCode, t: &T) -> Response {
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

/// A path's id: anything but a positive whole number names no page.
pub(crate) fn id_of(s: &str) -> Result<i64, Failure> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::NotFound("no such page".into()).into())
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

fn status_or_error(status: Option<i32>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), Some(e)) => format!("{s} ({e})"),
        (Some(s), None) => s.to_string(),
        (None, Some(e)) => e.to_owned(),
        (None, None) => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_cut_at_a_character_boundary() {
        assert_eq!(head("short", 10), "short");
        assert_eq!(head("héllo", 2), "h…");
        assert_eq!(percent(Some(0.25)), "25%");
        assert_eq!(percent(None), "-");
    }
}
