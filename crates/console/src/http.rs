//! The small HTTP vocabulary of the console: reading a bounded body,
//! decoding forms and query strings, and building the responses (HTML,
//! JSON, redirects, errors) with the security headers every page carries.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

pub type Body = Full<Bytes>;

/// Largest request body read: forms and JSON are small.
pub const BODY_LIMIT: usize = 1 << 20;

/// The body, or None when it is larger than `BODY_LIMIT` or broken off.
pub async fn read_body(req: Request<Incoming>) -> Option<Bytes> {
    Limited::new(req.into_body(), BODY_LIMIT)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

/// Pairs of a form body or a query string, in order.
pub fn pairs(input: &[u8]) -> Vec<(String, String)> {
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

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

pub fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

pub fn css(body: &'static str) -> Response<Body> {
    let mut r = respond(StatusCode::OK, "text/css; charset=utf-8", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    r
}

pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(status, "application/json", body),
        Err(e) => error_json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the answer: {e}"),
            None,
        ),
    }
}

/// `{"error": "...", "field": "..."}`: every API error has this shape.
pub fn error_json(status: StatusCode, message: &str, field: Option<&str>) -> Response<Body> {
    let body = match field {
        Some(f) => serde_json::json!({"error": message, "field": f}),
        None => serde_json::json!({"error": message}),
    };
    respond(status, "application/json", body.to_string())
}

pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.to_owned())
}

/// 303 See Other: after a POST, the browser GETs `to`.
pub fn redirect(to: &str) -> Response<Body> {
    let mut r = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// A header's value as text, if present and readable.
pub fn header<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
