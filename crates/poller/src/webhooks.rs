//! The in-process cache of webhooks, used to match events at fan-out and to
//! address deliveries.
//!
//! It is reloaded whole when the listener hears `outbox_webhooks` (a trigger
//! fires it on every change) and after every reconnect, since notifications
//! sent while disconnected are lost. Webhooks are few; a reload is one query.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

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
}

impl Webhook {
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        matching::any_matches(self.event_types.iter().map(String::as_str), event_type)
    }
}

type Map = HashMap<i64, Arc<Webhook>>;

#[derive(Default)]
pub struct WebhookCache {
    current: RwLock<Arc<Map>>,
}

const LOAD: &str = "
SELECT id, name, url, event_types, secret, headers
  FROM outbox.webhooks
 WHERE enabled
 ORDER BY id";

impl WebhookCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the cache with what the database holds now.
    pub async fn reload(&self, pool: &Pool) -> Result<usize, Error> {
        let client = pool.get().await?;
        let rows = client.query(LOAD, &[]).await?;
        let mut map = Map::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let secret: String = row.get(4);
            let (secrets, secret_error) = match Secret::parse(&secret) {
                Ok(s) => (vec![s], None),
                Err(e) => {
                    tracing::error!(webhook_id = id, error = %e, "webhook secret is unusable; its deliveries will fail until it is fixed");
                    (Vec::new(), Some(format!("bad secret: {e}")))
                }
            };
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
            map.insert(
                id,
                Arc::new(Webhook {
                    id,
                    name: row.get(1),
                    url: row.get(2),
                    event_types: row.get(3),
                    secrets,
                    secret_error,
                    headers,
                }),
            );
        }
        let n = map.len();
        *self.current.write().expect("webhook cache lock") = Arc::new(map);
        tracing::debug!(webhooks = n, "webhook cache reloaded");
        Ok(n)
    }

    pub fn get(&self, id: i64) -> Option<Arc<Webhook>> {
        self.snapshot().get(&id).cloned()
    }

    pub fn snapshot(&self) -> Arc<Map> {
        self.current.read().expect("webhook cache lock").clone()
    }

    /// The webhooks an event goes to: its target alone when it has one (if
    /// that webhook is enabled), else every enabled webhook whose patterns
    /// match its type.
    pub fn recipients(map: &Map, event_type: &str, target: Option<i64>) -> Vec<i64> {
        match target {
            Some(id) => map.contains_key(&id).then_some(id).into_iter().collect(),
            None => map
                .values()
                .filter(|w| w.subscribes_to(event_type))
                .map(|w| w.id)
                .collect(),
        }
    }
}
