//! Signing in with the admin token, and signing out.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;

use super::{render, Form};
use crate::auth::{self, Session};
use crate::http::{self, Db};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    error: Option<String>,
}

async fn login_page(State(state): State<AppState>) -> Response {
    if !state.auth.requires_login() {
        return http::redirect("/");
    }
    render(StatusCode::OK, &Login { error: None })
}

/// The login form is posted without a session, so the guard has not read
/// its body: the token comes from the form here.
async fn login(State(state): State<AppState>, db: Db, body: axum::body::Bytes) -> Response {
    if !state.auth.requires_login() {
        return http::redirect("/");
    }
    let pairs = http::pairs(&body);
    let given = http::first(&pairs, "token").unwrap_or("").trim();
    if !state.auth.token_matches(given) {
        return render(
            StatusCode::UNAUTHORIZED,
            &Login {
                error: Some("That is the wrong token.".into()),
            },
        );
    }
    match state.auth.open(&db, None, auth::SESSION_TTL).await {
        Ok(session) => http::with_cookie(
            http::redirect("/"),
            &auth::set_cookie(&session, state.https),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "admin console: starting a session failed");
            http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try again shortly\n",
            )
        }
    }
}

/// Ends the session on every replica (the row goes), not only in this
/// browser; a portal session goes back to its link's page.
async fn logout(
    State(state): State<AppState>,
    db: Db,
    Extension(session): Extension<Session>,
    _form: Form,
) -> Response {
    if let Err(e) = state.auth.end(&db, &session).await {
        tracing::warn!(error = %e, "admin console: ending a session failed");
    }
    let to = if session.tenant.is_some() {
        "/portal/signed-out"
    } else {
        "/login"
    };
    http::with_cookie(http::redirect(to), &auth::clear_cookie())
}
