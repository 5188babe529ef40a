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
mod caller;
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
use hyper_util::service::TowerToHyperService;
use outboxd_db::Pool;
use outboxd_deliverer::{Clients, TargetPolicy};
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
    /// The private ranges tenants' webhooks may reach, as for deliveries.
    pub tenant_allowed: Vec<outboxd_core::address::Allowed>,
    /// Whole-request timeout of a test event.
    pub request_timeout: Duration,
    /// The tenant portal's settings.
    pub portal: Portal,
    /// What the listener allows its clients (connections, timeouts).
    pub limits: outboxd_serve::Limits,
}

/// How tenants' portals are reached, signed, embedded and themed.
#[derive(Debug, Clone, Default)]
pub struct Portal {
    /// The console's address as users reach it, the base of portal links;
    /// None: the admin listener's own address.
    pub base_url: Option<String>,
    /// Portal-link keys (comma-separated, the first signing); None: a key
    /// derived from the admin token.
    pub keys: Option<String>,
    /// Origins that may show the portal in an iframe (CSP
    /// `frame-ancestors` sources); empty: none.
    pub frame_ancestors: Vec<String>,
    pub theme: Theme,
    /// Limits of tenants' webhooks.
    pub rules: outboxd_admin::tenants::Rules,
}

/// The portal's look: the platform's name, logo and accent colour.
#[derive(Debug, Clone, Default)]
pub struct Theme {
    pub name: Option<String>,
    pub logo_url: Option<String>,
    /// A CSS hex colour, `#rgb` or `#rrggbb`.
    pub accent: Option<String>,
}

/// What every request handler shares.
pub(crate) struct State {
    pub pool: Pool,
    pub http: Clients,
    pub auth: Auth,
    pub request_timeout: Duration,
    pub portal: Portal,
    /// Where portal links point.
    pub base_url: String,
    /// Whether users reach the console in a secure context (portal cookies
    /// then work inside another site's iframe).
    pub https: bool,
    /// None: no key, no portal links.
    pub link_keys: Option<outboxd_core::portal_link::Keys>,
    /// The SSRF policy webhook URLs are judged by, for warnings on saving.
    pub targets: TargetPolicy,
}

pub(crate) type AppState = Arc<State>;

/// The console's listener, bound, ready to `run`.
pub struct Console {
    listener: TcpListener,
    app: Router,
    limits: outboxd_serve::Limits,
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
        let http = Clients::build(
            Duration::from_secs(5),
            4,
            settings.targets.clone(),
            settings.tenant_allowed,
        )
        .map_err(|e| Error::Client(e.to_string()))?;
        let local = listener.local_addr().unwrap_or(addr);
        let settings_limits = settings.limits;
        let base_url = settings
            .portal
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let link_keys =
            outboxd_admin::portal::keys(settings.portal.keys.as_deref(), settings.token.as_deref());
        let state = Arc::new(State {
            pool,
            http,
            https: secure_context(&base_url),
            base_url,
            link_keys,
            auth: Auth::new(settings.token),
            request_timeout: settings.request_timeout,
            portal: settings.portal,
            targets: settings.targets,
        });
        Ok(Console {
            listener,
            app: app(state),
            limits: settings_limits,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown`; requests in progress finish within the
    /// listener's grace.
    pub async fn run(self, shutdown: CancellationToken) {
        let service = TowerToHyperService::new(self.app);
        outboxd_serve::serve("admin", self.listener, service, self.limits, shutdown).await;
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

/// Whether browsers treat the console's address as a secure context: https,
/// or a loopback name (browsers keep Secure cookies there too).
fn secure_context(base_url: &str) -> bool {
    if base_url.starts_with("https://") {
        return true;
    }
    let host = base_url
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned));
    host.is_some_and(|h| auth::loopback_host(Some(&h)))
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

impl State {
    /// The SSRF policy a webhook of `tenant` is delivered under, for the
    /// warnings on saving it (see `outboxd_deliverer::Clients`).
    pub(crate) fn targets_for(&self, tenant: Option<&str>) -> TargetPolicy {
        match tenant {
            None => self.targets.clone(),
            Some(_) => TargetPolicy {
                enabled: true,
                allowed: self.portal.rules.allowed.clone(),
            },
        }
    }
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
