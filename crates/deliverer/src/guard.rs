//! The SSRF guard, inside the connector so nothing can route around it.
//!
//! Host names are resolved here and every resulting address is judged by
//! `outboxd_core::address` before any connection is made; the connection
//! then goes to exactly the addresses judged, so DNS rebinding between the
//! check and the connect is impossible. IP-literal hosts skip resolvers in
//! hyper-util, so the connector wrapper judges those itself. An allowlist
//! entry may open one port only: the connector knows the URL's port and
//! lends it to the resolver for the one connection it is making.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use outboxd_core::address::{self, Allowed};
use tower_service::Service;

/// A refused address; the deliverer finds it in the error chain and logs
/// `blocked: <address> is <kind>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub addr: IpAddr,
    pub kind: &'static str,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.addr, self.kind)
    }
}

impl std::error::Error for Blocked {}

/// What the guard lets through. `enabled: false` turns it off entirely.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub enabled: bool,
    pub allowed: Vec<Allowed>,
}

tokio::task_local! {
    /// The port of the connection being made, while the connector makes it.
    static PORT: u16;
}

impl Policy {
    fn judge(&self, addr: IpAddr, port: Option<u16>) -> Result<(), Blocked> {
        if !self.enabled {
            return Ok(());
        }
        match address::refusal(addr, port, &self.allowed) {
            Some(kind) => Err(Blocked { addr, kind }),
            None => Ok(()),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Resolves with the system resolver, then keeps only permitted addresses.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        // Unknown outside the connector: then only entries for every port apply.
        let port = PORT.try_with(|p| *p).ok();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.judge(a.ip(), port) {
                    Ok(()) => true,
                    Err(b) => {
                        refused.get_or_insert(b);
                        false
                    }
                })
                .collect();
            match (permitted.is_empty(), refused) {
                (true, Some(blocked)) => Err(std::io::Error::other(blocked)),
                _ => Ok(permitted.into_iter()),
            }
        })
    }
}

/// The TCP connector with the guard in front of IP-literal hosts.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: Arc<Policy>,
}

impl GuardedConnector {
    /// Returns the connector and a handle to configure its TCP settings.
    pub fn new(
        policy: Policy,
        configure: impl FnOnce(&mut HttpConnector<GuardedResolver>),
    ) -> Self {
        let policy = Arc::new(policy);
        let mut inner = HttpConnector::new_with_resolver(GuardedResolver {
            policy: policy.clone(),
        });
        configure(&mut inner);
        GuardedConnector { inner, policy }
    }
}

impl Service<Uri> for GuardedConnector {
    type Response = <HttpConnector<GuardedResolver> as Service<Uri>>::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let literal = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        if let Some(addr) = literal {
            if let Err(blocked) = self.policy.judge(addr, Some(port)) {
                return Box::pin(async move { Err(Box::new(blocked) as Self::Error) });
            }
        }
        // hyper-util resolves inside this future, so the resolver sees the port.
        let fut = PORT.scope(port, self.inner.call(uri));
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}
