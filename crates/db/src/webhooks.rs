//! The in-process cache of webhooks, used to match events at fan-out and to
//! address deliveries.
//!
//! It is reloaded whole when the listener hears `outbox_webhooks` (a trigger
//! fires it on every change) and after every reconnect, since notifications
//! sent while disconnected are lost. Webhooks are few; a reload is one query.
//!
//! During a secret rotation a webhook carries its previous secret too, after
//! the new one. The window's end is not announced by any notification, so the
//! cache remembers when each previous secret expires (as time left by the
//! database's clock, immune to skew) and drops it in memory when that passes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use outboxd_core::matching;
use outboxd_core::signing::Secret;

use crate::{Error, Pool};

/// One enabled webhook, as the deliverer needs it.
#[derive(Debug)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// Signing keys, newest first; more than one during a secret rotation.
    pub secrets: Vec<Secret>,
    /// Why the secret could not be used, if it could not: the delivery then
    /// fails with this reason instead of going out unsigned.
    pub secret_error: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The customer this endpoint belongs to; None: a platform webhook.
    pub tenant: Option<String>,
    /// Requests per second, all replicas together (`outbox.rate_buckets`).
    pub rate_limit: Option<i32>,
}

impl Webhook {
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        matching::any_matches(self.event_types.iter().map(String::as_str), event_type)
    }

    /// Whether an event of `tenant` (None: the platform) may reach it.
    pub fn receives_tenant(&self, tenant: Option<&str>) -> bool {
        matching::tenant_receives(self.tenant.as_deref(), tenant)
    }
}

type Map = HashMap<i64, Arc<Webhook>>;

#[derive(Default)]
pub struct WebhookCache {
    current: RwLock<State>,
}

#[derive(Default)]
struct State {
    map: Arc<Map>,
    /// When a webhook's previous secret stops signing, earliest first.
    expiries: Vec<(Instant, i64)>,
}

/// The previous secret comes only while its window lasts, with the seconds
/// left in it.
const LOAD: &str = "
SELECT id, name, url, event_types, coalesce(secret, ''), headers,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret END,
       extract(epoch FROM previous_secret_expires_at - now())::float8, tenant, rate_limit
  FROM outbox.webhooks LEFT JOIN outbox.webhook_secrets ON webhook_id = id
 WHERE enabled
 ORDER BY id";

/// One webhook whatever its state, for the admin CLI (`outboxd test-event`).
const LOAD_ONE: &str = "
SELECT id, name, url, event_types, coalesce(secret, ''), headers,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret END,
       extract(epoch FROM previous_secret_expires_at - now())::float8, tenant, rate_limit
  FROM outbox.webhooks LEFT JOIN outbox.webhook_secrets ON webhook_id = id
 WHERE id = $1";

/// Builds a webhook from a LOAD row; the second value is when its previous
/// secret expires, if it has one in use.
fn from_row(row: &tokio_postgres::Row) -> (Webhook, Option<Instant>) {
    let id: i64 = row.get(0);
    let secret: String = row.get(4);
    let (mut secrets, secret_error) = match Secret::parse(&secret) {
        Ok(s) => (vec![s], None),
        Err(e) => {
            tracing::error!(webhook_id = id, error = %e, "webhook secret is unusable; its deliveries will fail until it is fixed");
            (Vec::new(), Some(format!("bad secret: {e}")))
        }
    };
    let mut expires = None;
    if let (Some(previous), Some(left)) = (
        row.get::<_, Option<String>>(6),
        row.get::<_, Option<f64>>(7),
    ) {
        match Secret::parse(&previous) {
            // Newest first: receivers that switched find their signature first.
            Ok(s) if secret_error.is_none() => {
                secrets.push(s);
                expires = Some(Instant::now() + Duration::from_secs_f64(left.max(0.0)));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(webhook_id = id, error = %e, "previous webhook secret is unusable; signing with the current one only");
            }
        }
    }
    let headers: serde_json::Value = row.get(5);
    let headers = headers
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    let webhook = Webhook {
        id,
        name: row.get(1),
        url: row.get(2),
        event_types: row.get(3),
        secrets,
        secret_error,
        headers,
        tenant: row.get(8),
        rate_limit: row.get(9),
    };
    (webhook, expires)
}

/// Loads one webhook, enabled or not, with the secrets it signs with now.
pub async fn load_one(client: &tokio_postgres::Client, id: i64) -> Result<Option<Webhook>, Error> {
    let row = client.query_opt(LOAD_ONE, &[&id]).await?;
    Ok(row.map(|r| from_row(&r).0))
}

impl WebhookCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the cache with what the database holds now.
    pub async fn reload(&self, pool: &Pool) -> Result<usize, Error> {
        let client = pool.get().await?;
        let rows = client.query(LOAD, &[]).await?;
        let mut map = Map::with_capacity(rows.len());
        let mut expiries = Vec::new();
        for row in rows {
            let (webhook, expires) = from_row(&row);
            if let Some(at) = expires {
                expiries.push((at, webhook.id));
            }
            map.insert(webhook.id, Arc::new(webhook));
        }
        expiries.sort();
        let n = map.len();
        *self.current.write().expect("webhook cache lock") = State {
            map: Arc::new(map),
            expiries,
        };
        tracing::debug!(webhooks = n, "webhook cache reloaded");
        Ok(n)
    }

    pub fn get(&self, id: i64) -> Option<Arc<Webhook>> {
        self.snapshot().get(&id).cloned()
    }

    pub fn snapshot(&self) -> Arc<Map> {
        {
            let state = self.current.read().expect("webhook cache lock");
            match state.expiries.first() {
                Some((at, _)) if *at <= Instant::now() => {}
                _ => return state.map.clone(),
            }
        }
        self.drop_expired_secrets()
    }

    /// Rebuilds the entries whose previous secret's window has passed, with
    /// the current secret alone.
    fn drop_expired_secrets(&self) -> Arc<Map> {
        let mut state = self.current.write().expect("webhook cache lock");
        let now = Instant::now();
        let due = state.expiries.partition_point(|(at, _)| *at <= now);
        if due == 0 {
            // Another caller got here first, or a reload replaced the state.
            return state.map.clone();
        }
        let mut map = Map::clone(&state.map);
        for (_, id) in state.expiries.drain(..due) {
            if let Some(w) = map.get(&id) {
                let trimmed = Webhook {
                    id: w.id,
                    name: w.name.clone(),
                    url: w.url.clone(),
                    event_types: w.event_types.clone(),
                    secrets: w.secrets.iter().take(1).cloned().collect(),
                    secret_error: w.secret_error.clone(),
                    headers: w.headers.clone(),
                    tenant: w.tenant.clone(),
                    rate_limit: w.rate_limit,
                };
                map.insert(id, Arc::new(trimmed));
            }
        }
        state.map = Arc::new(map);
        tracing::debug!(webhooks = due, "previous secrets expired");
        state.map.clone()
    }

    /// The webhooks an event goes to: its target alone when it has one (if
    /// that webhook is enabled), else every enabled webhook whose patterns
    /// match its type and whose tenant receives the event's tenant.
    pub fn recipients(
        map: &Map,
        event_type: &str,
        target: Option<i64>,
        tenant: Option<&str>,
    ) -> Vec<i64> {
        match target {
            Some(id) => map.contains_key(&id).then_some(id).into_iter().collect(),
            None => map
                .values()
                .filter(|w| w.subscribes_to(event_type) && w.receives_tenant(tenant))
                .map(|w| w.id)
                .collect(),
        }
    }

    /// Whether any webhook belongs to a tenant: without one, an event's
    /// tenant changes nothing and the fan-out need not read it.
    pub fn has_tenants(map: &Map) -> bool {
        map.values().any(|w| w.tenant.is_some())
    }
}
