//! Signing in with the admin token, and signing out.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::{render, Form};
use crate::auth;
use crate::http;
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
async fn login(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
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
    let session = state.auth.new_session();
    http::with_cookie(
        http::redirect("/"),
        &auth::set_cookie(&state.auth.cookie_value(&session)),
    )
}

async fn logout(_form: Form) -> Response {
    http::with_cookie(http::redirect("/login"), &auth::clear_cookie())
}
