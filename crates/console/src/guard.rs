//! The guards in front of every route, in one place so no handler can
//! forget them. The API takes the Bearer token and refuses other origins;
//! the pages want a session, refuse cross-origin posts and check every
//! post's CSRF token (the body is read here, once, and handed to the
//! handler as `Form`). Without a token the console trusts loopback only.
//!
//! Answers that axum makes on its own (405, 413, 404) are given the shape
//! of the side they come from: JSON errors under `/api`, pages elsewhere.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::auth::{self, Session};
use crate::caller::Caller;
use crate::http::{self, BODY_LIMIT};
use crate::pages::{self, FormPairs, PageFailure};
use crate::AppState;

/// Where a portal link lands.
const PORTAL_OPEN: &str = outboxd_core::portal_link::PATH;

/// Public paths: what a browser needs before it signs in.
const PUBLIC: [&str; 3] = [
    "/api/openapi.json",
    "/static/console.css",
    "/static/theme.css",
];

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if PUBLIC.contains(&path) {
        return next.run(req).await;
    }
    if is_api(path) {
        api(&state, req, next).await
    } else {
        page(&state, req, next).await
    }
}

async fn api(state: &AppState, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = http::header(h, "host");
    // A portal session reaches its own tenant's data; the admin comes with
    // the token, never with a cookie, so a cross-site page cannot borrow it.
    let portal = match portal_session(state, h).await {
        Ok(s) => s.and_then(|s| s.tenant),
        Err(r) => return r,
    };
    let caller = match portal {
        Some(tenant) => Caller::Tenant(tenant),
        None if state.auth.bearer_ok(http::header(h, "authorization")) => Caller::Admin,
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer <OUTBOXD_ADMIN_TOKEN>",
            )
            .into_response();
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    if !auth::same_origin(
        http::header(h, "origin"),
        http::header(h, "sec-fetch-site"),
        host,
    ) || (caller == Caller::Admin && !state.auth.requires_login() && !auth::loopback_host(host))
    {
        return ApiError::new(StatusCode::FORBIDDEN, "cross-origin requests are refused")
            .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The session of the request's cookie, when it has one (only portal
/// sessions count on the API).
async fn portal_session(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Option<Session>, Response> {
    let cookie = http::header(headers, "cookie");
    if !cookie.is_some_and(|c| c.contains(auth::COOKIE)) {
        return Ok(None);
    }
    let client = db(state).await?;
    state.auth.find(&client, cookie).await.map_err(|e| {
        tracing::warn!(error = %e, "admin console: reading the session failed");
        unavailable()
    })
}

async fn db(state: &AppState) -> Result<outboxd_db::PooledClient, Response> {
    state.pool.get().await.map_err(|e| {
        tracing::warn!(error = %e, "admin console: database unavailable");
        unavailable()
    })
}

fn unavailable() -> Response {
    http::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; try again shortly\n",
    )
}

/// The API's answers that axum and tower-http make on their own (405 with
/// its `Allow`, 413) in the shape of every API error.
pub(crate) async fn api_shapes(req: Request, next: Next) -> Response {
    let api_path = is_api(req.uri().path());
    let r = next.run(req).await;
    if !api_path || is_json(&r) {
        return r;
    }
    match r.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = allowed(&r);
            let mut e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"))
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&allow) {
                e.headers_mut().insert(ALLOW, v);
            }
            e
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB",
        )
        .into_response(),
        _ => r,
    }
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The methods of a 405, as a person lists them: HEAD goes without saying.
fn allowed(r: &Response) -> String {
    let allow = r
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    allow
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "HEAD")
        .collect::<Vec<_>>()
        .join(", ")
}

async fn page(state: &AppState, req: Request, next: Next) -> Response {
    let h = req.headers();
    let host = http::header(h, "host");
    let path = req.uri().path();
    if !state.auth.requires_login() && !auth::loopback_host(host) && !path.starts_with("/portal/") {
        return http::text(
            StatusCode::FORBIDDEN,
            "without OUTBOXD_ADMIN_TOKEN the console answers loopback names only\n",
        );
    }
    let post = req.method() == Method::POST;
    if post
        && !auth::same_origin(
            http::header(h, "origin"),
            http::header(h, "sec-fetch-site"),
            host,
        )
    {
        return http::text(
            StatusCode::FORBIDDEN,
            "cross-origin form posts are refused\n",
        );
    }
    if path == "/login" || path == PORTAL_OPEN || path == "/portal/signed-out" {
        return next.run(req).await;
    }
    let client = match db(state).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let session = match state.auth.find(&client, http::header(h, "cookie")).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "admin console: reading the session failed");
            return unavailable();
        }
    };
    // A session from here on: signed in, or (no token, loopback) made now.
    let (session, new_session) = match session {
        Some(s) => (s, false),
        None if state.auth.requires_login() || post => {
            return if post {
                http::text(
                    StatusCode::FORBIDDEN,
                    "no session: the CSRF check failed; reload the page\n",
                )
            } else {
                http::redirect("/login")
            };
        }
        None => match state.auth.open(&client, None, auth::SESSION_TTL).await {
            Ok(s) => (s, true),
            Err(e) => {
                tracing::warn!(error = %e, "admin console: starting a session failed");
                return unavailable();
            }
        },
    };
    drop(client);
    let mut req = if post {
        match read_form(req).await {
            Ok((req, pairs)) => {
                if !state.auth.csrf_ok(&session, http::first(&pairs, "csrf")) {
                    return http::text(
                        StatusCode::FORBIDDEN,
                        "the CSRF token is missing or wrong; reload the page and try again\n",
                    );
                }
                let mut req = req;
                req.extensions_mut().insert(FormPairs(pairs));
                req
            }
            Err(r) => return r,
        }
    } else {
        req
    };
    let caller = match &session.tenant {
        Some(t) => Caller::Tenant(t.clone()),
        None => Caller::Admin,
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(session.clone());
    let mut r = next.run(req).await;
    if let Some(PageFailure(status, message)) = r.extensions_mut().remove::<PageFailure>() {
        r = pages::failure(state, &session, status, message);
    } else if r.status() == StatusCode::METHOD_NOT_ALLOWED {
        r = pages::failure(
            state,
            &session,
            StatusCode::NOT_FOUND,
            "no such page".into(),
        );
    }
    if session.tenant.is_some() {
        pages::portal_headers(state, r.headers_mut());
    }
    if new_session {
        http::with_cookie(r, &auth::set_cookie(&session, state.https))
    } else {
        r
    }
}

/// Reads a form body (at most `BODY_LIMIT`), giving back the request with
/// the same bytes and the decoded pairs.
async fn read_form(req: Request) -> Result<(Request, http::Pairs), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| http::text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"))?;
    let pairs = http::pairs(&bytes);
    Ok((Request::from_parts(parts, Body::from(bytes)), pairs))
}

/// No route: a JSON 404 under `/api`, the page saying so elsewhere.
pub(crate) async fn not_found(req: Request) -> Response {
    if is_api(req.uri().path()) {
        ApiError::not_found().into_response()
    } else {
        PageFailure::response(StatusCode::NOT_FOUND, "no such page".into())
    }
}
