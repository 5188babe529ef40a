//! The one HTTP client of a daemon, shared by every request.
//!
//! Connections are pooled per host and kept alive (the cost of a delivery is
//! then one round trip, not a TCP and TLS handshake); HTTP/2 is used when
//! the server offers it by ALPN. TLS is rustls with the ring provider and the
//! Mozilla roots, chosen explicitly so no second provider can panic at start.
//!
//! Tenants' webhooks get a client of their own (`Clients`), whose guard
//! refuses every private range whatever the platform allows for its own
//! webhooks: a customer's URL must never reach the platform's network, and
//! a connection pooled under the platform's looser policy must never be
//! reused for a customer's request to the same host.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;

use crate::guard::{GuardedConnector, Policy};

pub type HttpClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// `connect_timeout` bounds the TCP connect; `max_idle_per_host` how many
/// idle keep-alive connections one receiver may hold; `policy` is the SSRF
/// guard's.
pub fn build_client(
    connect_timeout: Duration,
    max_idle_per_host: usize,
    policy: Policy,
) -> Result<HttpClient, ClientError> {
    let http = GuardedConnector::new(policy, |http| {
        // https URIs are handed to the TLS layer, which needs this off.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
    });
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

/// The platform's client, under the configured policy, and the tenants',
/// whose guard is always on.
#[derive(Clone)]
pub struct Clients {
    pub platform: HttpClient,
    pub tenants: HttpClient,
}

impl Clients {
    /// `tenant_allowed`: the private ranges tenants' webhooks may reach
    /// (none but in a test setup); the guard stays on for them even when
    /// `policy` turns it off.
    pub fn build(
        connect_timeout: Duration,
        max_idle_per_host: usize,
        policy: Policy,
        tenant_allowed: Vec<outboxd_core::address::Allowed>,
    ) -> Result<Clients, ClientError> {
        let tenants = Policy {
            enabled: true,
            allowed: tenant_allowed,
        };
        Ok(Clients {
            platform: build_client(connect_timeout, max_idle_per_host, policy)?,
            tenants: build_client(connect_timeout, max_idle_per_host, tenants)?,
        })
    }

    /// The client for a tenant's webhook (`true`) or a platform webhook.
    pub fn for_tenant(&self, tenants: bool) -> &HttpClient {
        if tenants {
            &self.tenants
        } else {
            &self.platform
        }
    }
}
