//! The small HTTP vocabulary of the console: decoding forms and query
//! strings, building the answers (HTML, CSS, text, redirects), and the
//! extractor of a pooled database connection. The security headers every
//! answer carries are layers (see `app` in lib.rs); `CSP` is their default.

use axum::extract::FromRequestParts;
use axum::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Largest request body read: forms and JSON are small.
pub const BODY_LIMIT: usize = 1 << 20;

/// The content security policy of an answer that sets none: nothing but
/// this origin's style sheet, forms posting here, and no framing.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";

pub type Pairs = Vec<(String, String)>;

/// Pairs of a form body or a query string, in order.
pub fn pairs(input: &[u8]) -> Pairs {
    form_urlencoded::parse(input).into_owned().collect()
}

/// The first value of `name`, if any.
pub fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The first non-blank value of `name`, trimmed.
pub fn non_blank<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    first(pairs, name).map(str::trim).filter(|v| !v.is_empty())
}

/// Every value of `name`.
pub fn all(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn html(status: StatusCode, body: String) -> Response {
    respond(status, "text/html; charset=utf-8", body)
}

pub fn css(body: &'static str) -> Response {
    css_owned(body.to_owned())
}

pub fn css_owned(body: String) -> Response {
    let mut r = respond(StatusCode::OK, "text/css; charset=utf-8", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    r
}

pub fn text(status: StatusCode, body: &str) -> Response {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

/// 303 See Other: after a POST, the browser GETs `to`.
pub fn redirect(to: &str) -> Response {
    let mut r = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// Adds a `Set-Cookie` to an answer.
pub fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(SET_COOKIE, v);
    }
    r
}

/// A header's value as text, if present and readable.
pub fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A pooled database connection; 503 when the database cannot give one,
/// as JSON under `/api` and as text elsewhere.
pub struct Db(pub outboxd_db::PooledClient);

impl std::ops::Deref for Db {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &tokio_postgres::Client {
        &self.0
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        &mut self.0
    }
}

impl FromRequestParts<AppState> for Db {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Db, Response> {
        match state.pool.get().await {
            Ok(c) => Ok(Db(c)),
            Err(e) => {
                tracing::warn!(error = %e, "admin console: database unavailable");
                Err(if parts.uri.path().starts_with("/api") {
                    crate::api::ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the database is unavailable",
                    )
                    .into_response()
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the database is unavailable; try again shortly\n",
                    )
                })
            }
        }
    }
}
