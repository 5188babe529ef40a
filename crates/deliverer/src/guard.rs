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

/// The setting that widens the guard. Its name is part of every refusal:
/// the first webhook a newcomer tries is often on 127.0.0.1, and the
/// delivery log, the daemon's log and `outboxd test-event` should each say
/// how to allow it.
pub const ALLOW_SETTING: &str = "OUTBOXD_ALLOW_PRIVATE_TARGETS";

/// A refused address; the deliverer finds it in the error chain and logs
/// `blocked: <address> is <kind>; to allow it, add <cidr> to
/// OUTBOXD_ALLOW_PRIVATE_TARGETS ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub addr: IpAddr,
    pub kind: &'static str,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}; to allow it, add {} to {ALLOW_SETTING} (comma-separated CIDRs)",
            self.addr,
            self.kind,
            address::allowing_net(self.addr)
        )
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

    /// The addresses that may be connected to; when there are none because
    /// the guard refused them, the first refusal.
    fn permitted(
        &self,
        resolved: Vec<SocketAddr>,
        port: Option<u16>,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        let mut refused = None;
        let permitted: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| match self.judge(a.ip(), port) {
                Ok(()) => true,
                Err(b) => {
                    refused.get_or_insert(b);
                    false
                }
            })
            .collect();
        match (permitted.is_empty(), refused) {
            (true, Some(blocked)) => Err(blocked),
            _ => Ok(permitted),
        }
    }

    /// Whether deliveries to `url` would be refused, judged as the connector
    /// judges them (a host name by the addresses it resolves to here and
    /// now), for warning an admin who adds such a webhook. A URL that does
    /// not parse or a name that does not resolve is not refused by the
    /// guard, so it gives `None`.
    pub async fn refusal_of(&self, url: &str) -> Option<Blocked> {
        if !self.enabled {
            return None;
        }
        let uri: Uri = url.parse().ok()?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let port = Some(port_of(&uri));
        if let Ok(addr) = host.parse::<IpAddr>() {
            return self.judge(addr, port).err();
        }
        let lookup = tokio::net::lookup_host((host, 0));
        let resolved: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_FOR_WARNING, lookup)
            .await
            .ok()?
            .ok()?
            .collect();
        self.permitted(resolved, port).err()
    }
}

/// The port a connection to `uri` goes to.
fn port_of(uri: &Uri) -> u16 {
    uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    })
}

/// How long a warning may wait for DNS: a slow resolver should not hold up
/// adding a webhook.
const RESOLVE_FOR_WARNING: std::time::Duration = std::time::Duration::from_secs(2);

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
            policy
                .permitted(resolved, port)
                .map(Vec::into_iter)
                .map_err(std::io::Error::other)
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
        let port = port_of(&uri);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            enabled: true,
            allowed: allowed.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    #[tokio::test]
    async fn a_refusal_names_the_setting_that_allows_the_target() {
        let refused = policy(&[])
            .refusal_of("http://127.0.0.1:8080/hook")
            .await
            .expect("loopback is refused");
        assert_eq!(
            refused.to_string(),
            "127.0.0.1 is loopback; to allow it, add 127.0.0.1/32 to OUTBOXD_ALLOW_PRIVATE_TARGETS (comma-separated CIDRs)"
        );
        let mapped = policy(&[]).refusal_of("http://[::ffff:10.0.0.5]/").await;
        assert!(mapped.unwrap().to_string().contains("add 10.0.0.5/32 to"));
    }

    #[tokio::test]
    async fn urls_are_judged_as_the_connector_judges_them() {
        let strict = policy(&[]);
        assert!(strict.refusal_of("http://localhost:9/").await.is_some());
        assert!(strict.refusal_of("http://[::1]:9/").await.is_some());
        assert!(strict.refusal_of("http://8.8.8.8/").await.is_none());
        assert!(strict.refusal_of("not a url").await.is_none());
        let loopback = policy(&["127.0.0.0/8", "::1/128"]);
        assert!(loopback.refusal_of("http://localhost:9/").await.is_none());
        assert!(loopback.refusal_of("http://127.0.0.1:9/").await.is_none());
        assert!(loopback.refusal_of("http://10.0.0.5/").await.is_some());
        let off = Policy::default();
        assert!(off.refusal_of("http://127.0.0.1/").await.is_none());
    }
}
