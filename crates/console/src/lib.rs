//! The admin console and JSON HTTP API of outboxd, on a listener of their
//! own (`OUTBOXD_ADMIN_LISTEN`): server-rendered HTML screens for webhooks,
//! test events, the delivery log and the event catalog, the same operations
//! as JSON under `/api/` (described by `/api/openapi.json`, generated from
//! the handlers' types), and Zapier REST Hooks under `/api/hooks`.
//!
//! Every operation is a call into `outboxd_admin`, the library the CLI uses
//! too; this crate only speaks HTTP. The routes are an axum `Router` built
//! per resource (`api::*`, `pages::*`), wrapped in the tower-http layers
//! every answer needs (body limit, timeout, security headers) and in the
//! guards of `guard` (who may call, from where).

mod api;
pub mod auth;
mod guard;
mod http;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use outboxd_db::Pool;
use outboxd_deliverer::{build_client, HttpClient, TargetPolicy};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Auth;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("setting up the HTTP client for test events: {0}")]
    Client(String),
}

/// How the console is set up.
pub struct Settings {
    pub listen: SocketAddr,
    /// None: no login (allowed on loopback only; the binary checks that).
    pub token: Option<String>,
    /// The SSRF policy of test events, as for deliveries.
    pub targets: TargetPolicy,
    /// Whole-request timeout of a test event.
    pub request_timeout: Duration,
}

/// What every request handler shares.
pub(crate) struct State {
    pub pool: Pool,
    pub http: HttpClient,
    pub auth: Auth,
    pub request_timeout: Duration,
}

pub(crate) type AppState = Arc<State>;

/// The console's listener, bound, ready to `run`.
pub struct Console {
    listener: TcpListener,
    app: Router,
}

/// The OpenAPI document of the JSON API, as `/api/openapi.json` serves it.
pub fn openapi_json() -> String {
    api::document().to_pretty_json().unwrap_or_default()
}

impl Console {
    /// Binds now, so a bad address or a port in use stops start-up.
    pub async fn bind(settings: Settings, pool: Pool) -> Result<Console, Error> {
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let http = build_client(Duration::from_secs(5), 4, settings.targets)
            .map_err(|e| Error::Client(e.to_string()))?;
        let state = Arc::new(State {
            pool,
            http,
            auth: Auth::new(settings.token),
            request_timeout: settings.request_timeout,
        });
        Ok(Console {
            listener,
            app: app(state),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`; requests in progress finish on their own.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "admin console: accept failed");
                        continue;
                    }
                },
            };
            let service = TowerToHyperService::new(self.app.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// The whole application: API and pages behind their guards, then the
/// layers every answer passes through. A test event may take the whole
/// request timeout, so the request timeout of the console is longer.
fn app(state: AppState) -> Router {
    let timeout = state.request_timeout + Duration::from_secs(30);
    let (api, doc) = api::router().split_for_parts();
    let doc: Arc<str> = api::finish(doc).to_pretty_json().unwrap_or_default().into();
    let openapi = move || {
        let doc = doc.clone();
        async move { ([(CONTENT_TYPE, "application/json")], doc.to_string()) }
    };
    let routes = Router::new()
        .route("/api/openapi.json", axum::routing::get(openapi))
        .merge(api)
        .merge(pages::router())
        .fallback(guard::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state);
    // axum adds `Allow` to a 405 as the answer leaves the router, so the
    // API's 405 is given its JSON shape outside it.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(guard::api_shapes))
        .layer(SetResponseHeaderLayer::if_not_present(
            X_FRAME_OPTIONS,
            frame_options,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(http::CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(RequestBodyLimitLayer::new(http::BODY_LIMIT))
}

/// `X-Frame-Options` for browsers that predate `frame-ancestors`: DENY
/// unless the answer's own policy lets some origin frame it.
fn frame_options<B>(response: &axum::http::Response<B>) -> Option<HeaderValue> {
    let embeddable = response
        .headers()
        .get(CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .and_then(|csp| {
            csp.split(';')
                .find_map(|d| d.trim().strip_prefix("frame-ancestors"))
        })
        .is_some_and(|sources| sources.trim() != "'none'");
    (!embeddable).then(|| HeaderValue::from_static("DENY"))
}

/// How an operation's error reads over HTTP.
pub(crate) fn status_of(e: &outboxd_admin::Error) -> StatusCode {
    use outboxd_admin::Error as E;
    match e {
        e if e.is_bad_input() => StatusCode::BAD_REQUEST,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
