//! A tenant's way in: the portal link (`/portal/open?...`, made by
//! `outboxd portal-link` or the API) is checked, used up, and turned into
//! a session of that tenant, and the browser goes on to the tenant's
//! webhooks. A link that is changed, expired or used already answers 401
//! with a page saying so and what to do. Portal pages may be framed by the
//! origins the platform configures, and carry its theme.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::header::{HeaderValue, CONTENT_SECURITY_POLICY};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use outboxd_core::portal_link::{self, LinkError};

use super::render;
use crate::auth::{self, SESSION_TTL};
use crate::http::{self, Db};
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(portal_link::PATH, get(open))
        .route("/static/theme.css", get(theme))
        .route("/portal/signed-out", get(signed_out))
}

async fn signed_out(State(state): State<AppState>) -> Response {
    denied(&state, "you signed out")
}

#[derive(Template)]
#[template(path = "portal_denied.html")]
struct Denied {
    name: String,
    what: String,
}

/// Records a link's nonce; false when it was recorded before.
const USE_LINK: &str = "
WITH purged AS (DELETE FROM outbox.portal_links_used WHERE expires_at < now())
INSERT INTO outbox.portal_links_used (nonce, tenant, expires_at)
VALUES ($1, $2, to_timestamp($3))
ON CONFLICT (nonce) DO NOTHING";

async fn open(State(state): State<AppState>, db: Db, RawQuery(query): RawQuery) -> Response {
    let pairs = http::pairs(query.unwrap_or_default().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let verdict = match &state.link_keys {
        Some(keys) => keys.verify(&pairs, now),
        None => Err(LinkError::BadSignature),
    };
    let claims = match verdict {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(reason = %e, "portal link refused");
            return denied(&state, &e.to_string());
        }
    };
    let fresh = match db
        .execute(
            USE_LINK,
            &[&claims.nonce, &claims.tenant, &(claims.expires as f64)],
        )
        .await
    {
        Ok(n) => n == 1,
        Err(e) => {
            tracing::warn!(error = %e, "portal link: recording its use failed");
            return http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try the link again shortly\n",
            );
        }
    };
    if !fresh {
        tracing::warn!(tenant = %claims.tenant, "portal link refused: used already");
        return denied(
            &state,
            "the link was used already: each link opens the portal once",
        );
    }
    let ttl = std::time::Duration::from_secs((claims.expires - claims.issued).max(1) as u64)
        .min(SESSION_TTL);
    let session = match state.auth.open(&db, Some(&claims.tenant), ttl).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "portal link: starting the session failed");
            return http::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try again shortly\n",
            );
        }
    };
    tracing::info!(tenant = %claims.tenant, session_ttl = %humantime::format_duration(ttl), "portal link used: signed in");
    let mut r = http::with_cookie(
        http::redirect("/webhooks"),
        &auth::set_cookie(&session, state.https),
    );
    portal_headers(&state, r.headers_mut());
    r
}

fn denied(state: &AppState, what: &str) -> Response {
    let mut r = render(
        StatusCode::UNAUTHORIZED,
        &Denied {
            name: state
                .portal
                .theme
                .name
                .clone()
                .unwrap_or_else(|| "Webhooks".into()),
            what: what.to_owned(),
        },
    );
    portal_headers(state, r.headers_mut());
    r
}

/// The accent colour as a style sheet, so no page needs inline style.
async fn theme(State(state): State<AppState>) -> Response {
    let accent = state.portal.theme.accent.as_deref().unwrap_or("#1d2b3a");
    http::css_owned(format!(":root {{ --accent: {accent}; }}\n"))
}

/// The content security policy of a portal answer: the platform's
/// framing origins and logo allowed, nothing else from elsewhere.
pub(crate) fn portal_headers(state: &AppState, headers: &mut HeaderMap) {
    let frame = if state.portal.frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        state.portal.frame_ancestors.join(" ")
    };
    let img = match &state.portal.theme.logo_url {
        Some(logo) => format!("'self' {logo}"),
        None => "'self'".into(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src {img}; form-action 'self'; frame-ancestors {frame}"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(CONTENT_SECURITY_POLICY, v);
    }
}
