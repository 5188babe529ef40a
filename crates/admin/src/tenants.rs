//! Tenants: the customers of a platform, each with webhooks of its own.
//!
//! A tenant's webhook is held to stricter rules than the platform's,
//! because its URL and headers are typed by a customer, not by the
//! platform's operators: its URL may not name a private address (the
//! deliverer's guard refuses private ranges for tenants whatever
//! `OUTBOXD_ALLOW_PRIVATE_TARGETS` says; this check only makes the refusal
//! immediate for literal addresses), its headers may not touch what the
//! signature, the body or the routing depend on, and a tenant has at most
//! `Rules::max_webhooks` of them. The ownership checks answer NotFound for
//! anything of another tenant or of the platform, so a portal cannot tell
//! another tenant's webhook from one that does not exist.

use serde::Serialize;
use tokio_postgres::Client;

use crate::{Error, Result};

/// How many webhooks a tenant may have unless configured otherwise.
pub const DEFAULT_MAX_WEBHOOKS: i64 = 50;

/// The limits a tenant's webhooks are held to.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Most webhooks one tenant may have.
    pub max_webhooks: i64,
    /// Private ranges a tenant's webhook may name anyway (a test setup).
    pub allowed: Vec<outboxd_core::address::Allowed>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            max_webhooks: DEFAULT_MAX_WEBHOOKS,
            allowed: Vec::new(),
        }
    }
}

/// A tenant id, as `outbox.is_valid_tenant` accepts it.
pub fn id(s: &str) -> Result<String> {
    let t = s.trim();
    if outboxd_core::matching::is_valid_tenant(t) {
        Ok(t.to_owned())
    } else {
        Err(Error::invalid(
            "tenant",
            format!(
                "{t:?} is not a tenant id: 1 to 64 characters, lowercase letters, digits and _ . -, \
                 starting with a letter or digit (e.g. acme or site-42)"
            ),
        ))
    }
}

/// Headers a tenant may not set (`outboxd_core::matching::tenant_may_set_header`,
/// which the schema's `tenant_headers` rule mirrors for every writer).
pub use outboxd_core::matching::tenant_may_set_header as header_allowed;

/// The headers of a tenant's webhook, each allowed.
pub fn check_headers(headers: &[(String, String)]) -> Result<()> {
    match headers.iter().find(|(n, _)| !header_allowed(n.trim())) {
        Some((n, _)) => Err(Error::invalid(
            "headers",
            format!(
                "{} cannot be set on a tenant's webhook: outboxd's signature, the body's framing \
                 and routing headers are the platform's",
                n.trim()
            ),
        )),
        None => Ok(()),
    }
}

/// A tenant's URL may not name a private address. Host names are judged
/// when the deliverer resolves them (every attempt, so rebinding does not
/// help); a literal address or `localhost` is refused at once.
pub fn check_url(url: &str, rules: &Rules) -> Result<()> {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return Ok(());
    };
    let Some(host) = uri.host() else {
        return Ok(());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    let refusal = if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        outboxd_core::address::refusal(std::net::Ipv4Addr::LOCALHOST.into(), port, &rules.allowed)
    } else {
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => outboxd_core::address::refusal(ip, port, &rules.allowed),
            Err(_) => None,
        }
    };
    match refusal {
        Some(kind) => Err(Error::invalid(
            "url",
            format!("{host} is {kind}: a tenant's webhook must point at a public address"),
        )),
        None => Ok(()),
    }
}

const OWNS_WEBHOOK: &str =
    "SELECT 1 FROM outbox.webhooks WHERE id = $1 AND tenant IS NOT DISTINCT FROM $2";

/// NotFound unless webhook `id` is `tenant`'s (None: the platform's).
pub async fn owns_webhook(client: &Client, tenant: &str, id: i64) -> Result<()> {
    match client.query_opt(OWNS_WEBHOOK, &[&id, &tenant]).await? {
        Some(_) => Ok(()),
        None => Err(Error::NotFound(format!("no webhook with id {id}"))),
    }
}

const OWNS_DELIVERY: &str = "
SELECT 1 FROM outbox.deliveries d JOIN outbox.webhooks w ON w.id = d.webhook_id
 WHERE d.id = $1 AND w.tenant = $2";

/// NotFound unless delivery `id` is to one of `tenant`'s webhooks.
pub async fn owns_delivery(client: &Client, tenant: &str, id: i64) -> Result<()> {
    match client.query_opt(OWNS_DELIVERY, &[&id, &tenant]).await? {
        Some(_) => Ok(()),
        None => Err(Error::NotFound(format!("no delivery with id {id}"))),
    }
}

/// One tenant as the admin's tenants screen shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantSummary {
    pub tenant: String,
    pub webhooks: i64,
    pub enabled: i64,
    /// Webhooks failing now (the circuit breaker's view).
    pub failing: i64,
    /// Deliveries waiting or in flight to the tenant's webhooks.
    pub pending: i64,
}

const LIST: &str = "
SELECT w.tenant, count(*), count(*) FILTER (WHERE w.enabled),
       count(*) FILTER (WHERE wh.failing_since IS NOT NULL),
       coalesce(sum(outbox.open_deliveries(w.id)), 0)::int8
  FROM outbox.webhooks w
  LEFT JOIN outbox.webhook_health wh ON wh.webhook_id = w.id
 WHERE w.tenant IS NOT NULL
 GROUP BY w.tenant
 ORDER BY w.tenant";

/// Every tenant that has a webhook, with its webhooks' health.
pub async fn list(client: &Client) -> Result<Vec<TenantSummary>> {
    Ok(client
        .query(LIST, &[])
        .await?
        .iter()
        .map(|r| TenantSummary {
            tenant: r.get(0),
            webhooks: r.get(1),
            enabled: r.get(2),
            failing: r.get(3),
            pending: r.get(4),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_urls_may_not_name_private_addresses() {
        let rules = Rules::default();
        for bad in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://[::1]:80/",
            "http://169.254.169.254/latest",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(check_url(bad, &rules).is_err(), "{bad}");
        }
        for ok in ["https://hooks.example.com/x", "http://93.184.216.34/"] {
            assert!(check_url(ok, &rules).is_ok(), "{ok}");
        }
        let loopback = Rules {
            allowed: vec!["127.0.0.0/8".parse().unwrap()],
            ..Rules::default()
        };
        assert!(check_url("http://127.0.0.1:9/x", &loopback).is_ok());
    }

    #[test]
    fn tenant_ids() {
        assert_eq!(id(" acme ").unwrap(), "acme");
        for bad in ["", "Acme", "a b", "-x", "x/y"] {
            assert!(
                matches!(
                    id(bad),
                    Err(Error::Invalid {
                        field: "tenant",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }
}
