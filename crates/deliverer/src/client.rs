//! The one HTTP client of a daemon, shared by every request.
//!
//! Connections are pooled per host and kept alive (the cost of a delivery is
//! then one round trip, not a TCP and TLS handshake); HTTP/2 is used when
//! the server offers it by ALPN. TLS is rustls with the ring provider and the
//! Mozilla roots, chosen explicitly so no second provider can panic at start.

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
