//! The admin console and JSON HTTP API of outboxd, on a listener of their
//! own (`OUTBOXD_ADMIN_LISTEN`): server-rendered HTML screens for webhooks,
//! test events, the delivery log and the event catalog, the same operations
//! as JSON under `/api/` (described by `/api/openapi.json`), and Zapier
//! REST Hooks under `/api/hooks`.
//!
//! Every operation is a call into `outboxd_admin`, the library the CLI uses
//! too; this crate only speaks HTTP. Plain hyper and a router by hand: the
//! routes are a dozen path shapes, and a `match` on segments keeps each one
//! visible in one place (`route`).

mod api;
pub mod auth;
mod http;
mod pages;
mod zapier;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use outboxd_db::Pool;
use outboxd_deliverer::{build_client, HttpClient, TargetPolicy};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::http::Body;

/// The OpenAPI document of the JSON API.
pub const OPENAPI: &str = include_str!("openapi.json");

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
    /// What the listener allows its clients (connections, timeouts).
    pub limits: outboxd_serve::Limits,
}

/// What every request handler shares.
pub(crate) struct State {
    pub pool: Pool,
    pub http: HttpClient,
    pub auth: Auth,
    pub request_timeout: Duration,
    /// The SSRF policy webhook URLs are judged by, for warnings on saving.
    pub targets: TargetPolicy,
}

/// The console's listener, bound, ready to `run`.
pub struct Console {
    listener: TcpListener,
    state: Arc<State>,
    limits: outboxd_serve::Limits,
}

impl Console {
    /// Binds now, so a bad address or a port in use stops start-up.
    pub async fn bind(settings: Settings, pool: Pool) -> Result<Console, Error> {
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let http = build_client(Duration::from_secs(5), 4, settings.targets.clone())
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(Console {
            listener,
            limits: settings.limits,
            state: Arc::new(State {
                pool,
                http,
                auth: Auth::new(settings.token),
                request_timeout: settings.request_timeout,
                targets: settings.targets,
            }),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`; requests in progress finish within the
    /// listener's grace.
    pub async fn run(self, shutdown: CancellationToken) {
        let state = self.state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(&state, req).await) }
        });
        outboxd_serve::serve("admin", self.listener, service, self.limits, shutdown).await;
    }
}

async fn route(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/api/openapi.json" {
        let mut r = http::text(StatusCode::OK, OPENAPI);
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return r;
    }
    if path == "/api" || path.starts_with("/api/") {
        return api::handle(state, req).await;
    }
    pages::handle(state, req).await
}

/// How an operation's error reads over HTTP.
pub(crate) fn status_of(e: &outboxd_admin::Error) -> StatusCode {
    use outboxd_admin::Error as E;
    match e {
        e if e.is_bad_input() => StatusCode::BAD_REQUEST,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Conflict(_) => StatusCode::CONFLICT,
        E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
