//! The in-process cache of webhooks, used to match events at fan-out and to
//! address deliveries.
//!
//! A change costs the webhooks it touches, not the cache: the trigger on
//! `outbox.webhooks` names the changed ids in its `outbox_webhooks`
//! notification and the listener refreshes those (`refresh`); the whole
//! list is loaded only at start and after a reconnect, since notifications
//! sent while disconnected are lost. Events are matched through an index of
//! the subscriptions (`outboxd_core::Subscriptions`), not by trying every
//! webhook.
//!
//! Each change also has a version number (V28), and the cache knows the
//! number up to which it has applied them all (`version`): the listener
//! advances it as the change notifications come in, a reload sets it to the
//! number it read in the snapshot of its rows. A fan-out round that reads
//! a newer number than the cache's waits for it (`caught_up`), so events
//! are never matched against a list older than a change made before them.
//! Only one load runs at a time (`loading`): a reload whose snapshot is
//! older than a refresh just applied would undo it.
//!
//! During a secret rotation a webhook carries its previous secret too, after
//! the new one. The window's end is not announced by any notification, so the
//! cache remembers when each previous secret expires (as time left by the
//! database's clock, immune to skew) and drops it in memory when that passes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};

use outboxd_core::matching::{self, Subscriptions};
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
    /// Deliveries of one ordering key go one at a time, in order (the
    /// fan-out copies the key and holds those behind another).
    pub ordered: bool,
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

/// How long a fan-out round waits for the listener to apply a change
/// before it reloads the webhooks itself.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The current number of `outbox.webhooks_version`.
const VERSION: &str = "SELECT version FROM outbox.webhooks_version";

/// The enabled webhooks by id, and who subscribes to what.
pub struct WebhookCache {
    current: RwLock<State>,
    /// Every change up to this version is applied; set after the change.
    version: watch::Sender<i64>,
    /// Held by whoever loads rows into the cache.
    loading: Mutex<()>,
}

impl Default for WebhookCache {
    fn default() -> Self {
        Self {
            current: RwLock::default(),
            version: watch::channel(0).0,
            loading: Mutex::new(()),
        }
    }
}

#[derive(Default)]
struct State {
    map: HashMap<i64, Arc<Webhook>>,
    subscriptions: Subscriptions,
    /// When a webhook's previous secret stops signing, earliest first.
    expiries: Vec<(Instant, i64)>,
    /// How many webhooks belong to a tenant: while none does, an event's
    /// tenant changes nothing and the fan-out need not read it.
    tenanted: usize,
    /// How many webhooks are ordered: while none is, the fan-out need not
    /// read ordering keys.
    ordered: usize,
    /// Of those, how many are the platform's: they get every tenant's
    /// events of a key, so keyed events keep to the stream's one order.
    platform_ordered: usize,
}

impl State {
    fn put(&mut self, webhook: Webhook, expires: Option<Instant>) {
        let id = webhook.id;
        self.drop_entry(id);
        if let Some(at) = expires {
            let at_pos = self.expiries.partition_point(|e| *e < (at, id));
            self.expiries.insert(at_pos, (at, id));
        }
        self.subscriptions.insert(id, &webhook.event_types);
        self.tenanted += usize::from(webhook.tenant.is_some());
        self.ordered += usize::from(webhook.ordered);
        self.platform_ordered += usize::from(webhook.ordered && webhook.tenant.is_none());
        self.map.insert(id, Arc::new(webhook));
    }

    fn drop_entry(&mut self, id: i64) {
        if let Some(gone) = self.map.remove(&id) {
            self.tenanted -= usize::from(gone.tenant.is_some());
            self.ordered -= usize::from(gone.ordered);
            self.platform_ordered -= usize::from(gone.ordered && gone.tenant.is_none());
            self.subscriptions.remove(id);
            self.expiries.retain(|&(_, e)| e != id);
        }
    }
}

/// The columns `from_row` reads, then `$where`: one list for every load,
/// so a column added to the cache is read by all of them. The previous
/// secret comes only while its window lasts, with the seconds left in it.
macro_rules! load_webhooks {
    ($where:literal) => {
        concat!(
            "SELECT id, name, url, event_types, coalesce(secret, ''), headers,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret END,
       extract(epoch FROM previous_secret_expires_at - now())::float8, tenant, rate_limit,
       ordered
  FROM outbox.webhooks LEFT JOIN outbox.webhook_secrets ON webhook_id = id
 WHERE ",
            $where
        )
    };
}

/// Every enabled webhook.
const LOAD: &str = load_webhooks!("enabled ORDER BY id");

/// The enabled ones of some webhooks.
const LOAD_SOME: &str = load_webhooks!("enabled AND id = ANY($1::int8[])");

/// One webhook whatever its state, for the admin CLI (`outboxd test-event`).
const LOAD_ONE: &str = load_webhooks!("id = $1");

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
        ordered: row.get(10),
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

    /// Replaces the cache with what the database holds now: at start and
    /// after the LISTEN connection was lost (its notifications with it).
    pub async fn reload(&self, pool: &Pool) -> Result<usize, Error> {
        let _loading = self.loading.lock().await;
        self.reload_locked(pool).await
    }

    async fn reload_locked(&self, pool: &Pool) -> Result<usize, Error> {
        let mut client = pool.get().await?;
        // One snapshot for the number and the rows.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let version: i64 = tx.query_one(VERSION, &[]).await?.get(0);
        let rows = tx.query(LOAD, &[]).await?;
        tx.commit().await?;
        let mut state = State::default();
        for row in rows {
            let (webhook, expires) = from_row(&row);
            state.put(webhook, expires);
        }
        let n = state.map.len();
        *self.write() = state;
        self.advance(version);
        tracing::debug!(webhooks = n, version, "webhook cache reloaded");
        Ok(n)
    }

    /// Loads these webhooks again: each is updated, added, or dropped when
    /// it is no longer enabled. Costs the webhooks named, not the cache.
    pub async fn refresh(&self, pool: &Pool, ids: &[i64]) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let _loading = self.loading.lock().await;
        let client = pool.get().await?;
        let rows = client.query(LOAD_SOME, &[&ids]).await?;
        let loaded: Vec<(Webhook, Option<Instant>)> = rows.iter().map(from_row).collect();
        let mut state = self.write();
        for &id in ids {
            state.drop_entry(id);
        }
        for (webhook, expires) in loaded {
            state.put(webhook, expires);
        }
        tracing::debug!(webhooks = ids.len(), "webhooks refreshed");
        Ok(())
    }

    /// Every change up to this version is applied.
    pub fn version(&self) -> i64 {
        *self.version.borrow()
    }

    fn advance(&self, to: i64) {
        self.version.send_if_modified(|v| {
            let newer = to > *v;
            if newer {
                *v = to;
            }
            newer
        });
    }

    /// The listener has refreshed what every change up to `notified` named.
    /// The number came in a notification, which any role may send: it is
    /// believed only as far as the database has got.
    pub async fn applied(&self, pool: &Pool, notified: i64) -> Result<(), Error> {
        if notified <= self.version() {
            return Ok(());
        }
        let client = pool.get().await?;
        let current: i64 = client.query_one(VERSION, &[]).await?.get(0);
        self.advance(notified.min(current));
        Ok(())
    }

    /// Returns once every change up to `version` is applied: the listener
    /// is given `CATCH_UP` to get there, then the cache reloads itself.
    pub async fn caught_up(&self, pool: &Pool, version: i64) -> Result<(), Error> {
        let mut applied = self.version.subscribe();
        let waited = tokio::time::timeout(CATCH_UP, applied.wait_for(|&v| v >= version)).await;
        if matches!(waited, Ok(Ok(_))) {
            return Ok(());
        }
        drop(waited);
        let _loading = self.loading.lock().await;
        if self.version() >= version {
            return Ok(());
        }
        tracing::warn!(
            version,
            applied = self.version(),
            "the webhook cache is behind a change it was not told of in time; reloading it"
        );
        self.reload_locked(pool).await.map(|_| ())
    }

    pub fn get(&self, id: i64) -> Option<Arc<Webhook>> {
        self.read().map.get(&id).cloned()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.read().map.contains_key(&id)
    }

    /// How many webhooks are enabled.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of every enabled webhook.
    pub fn ids(&self) -> Vec<i64> {
        self.read().map.keys().copied().collect()
    }

    /// The webhooks an event goes to: its target alone when it has one (if
    /// that webhook is enabled), else every enabled webhook whose patterns
    /// match its type and whose tenant receives the event's tenant.
    pub fn recipients(
        &self,
        event_type: &str,
        target: Option<i64>,
        tenant: Option<&str>,
    ) -> Vec<i64> {
        let state = self.read();
        match target {
            Some(id) => state
                .map
                .contains_key(&id)
                .then_some(id)
                .into_iter()
                .collect(),
            None => {
                let mut ids = state.subscriptions.matching(event_type);
                if state.tenanted > 0 {
                    ids.retain(|id| state.map.get(id).is_some_and(|w| w.receives_tenant(tenant)));
                }
                ids
            }
        }
    }

    /// The state, with the previous secrets whose window has passed dropped.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        {
            let state = self.current.read().unwrap_or_else(|e| e.into_inner());
            match state.expiries.first() {
                Some((at, _)) if *at <= Instant::now() => {}
                _ => return state,
            }
        }
        self.drop_expired_secrets();
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds the entries whose previous secret's window has passed, with
    /// the current secret alone.
    fn drop_expired_secrets(&self) {
        let mut state = self.write();
        let now = Instant::now();
        let due = state.expiries.partition_point(|(at, _)| *at <= now);
        let expired: Vec<i64> = state.expiries.drain(..due).map(|(_, id)| id).collect();
        for id in &expired {
            if let Some(w) = state.map.get(id) {
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
                    ordered: w.ordered,
                };
                state.map.insert(*id, Arc::new(trimmed));
            }
        }
        if !expired.is_empty() {
            tracing::debug!(webhooks = expired.len(), "previous secrets expired");
        }
    }

    /// Whether any webhook belongs to a tenant: without one, an event's
    /// tenant changes nothing and the fan-out need not read it.
    pub fn has_tenants(&self) -> bool {
        self.read().tenanted > 0
    }

    /// Whether any webhook is ordered: without one, the fan-out need not
    /// read ordering keys.
    pub fn has_ordered(&self) -> bool {
        self.read().ordered > 0
    }

    /// Whether a platform webhook is ordered: it gets the events of a key
    /// from every tenant, so none of them may take the express lane (V26).
    pub fn has_platform_ordered(&self) -> bool {
        self.read().platform_ordered > 0
    }

    /// Which of these webhooks are ordered, as the cache knows them.
    pub fn ordered_among(&self, ids: &[i64]) -> Vec<bool> {
        let state = self.read();
        ids.iter()
            .map(|id| state.map.get(id).is_some_and(|w| w.ordered))
            .collect()
    }
}
