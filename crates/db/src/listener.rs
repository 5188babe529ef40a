//! The LISTEN connection: one per daemon, outside the pool.
//!
//! deadpool drives pooled connections itself and drops notifications, so
//! this task owns a plain connection and polls its messages. Notifications
//! are hints: on `outbox_events` it wakes the dispatcher, on
//! `outbox_webhooks` it refreshes the webhooks the payload names (all of
//! them for an empty payload) before waking it, and on
//! `outbox_webhooks_version`, which follows each change (V28), it tells the
//! cache that every change up to that number is applied: a fan-out round
//! waits for that before it matches events made after a change. Whatever arrived
//! together is coalesced into one refresh, and whole reloads come at most
//! every `FULL_RELOAD_SPACING`, so a flood of notifications (any role may
//! send them) costs a few queries. When the connection drops it reconnects
//! with backoff (backon), then reloads the cache and wakes the dispatcher,
//! since anything sent meanwhile was lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool, WebhookCache};

pub const EVENTS_CHANNEL: &str = "outbox_events";
pub const WEBHOOKS_CHANNEL: &str = "outbox_webhooks";
pub const WEBHOOKS_VERSION_CHANNEL: &str = "outbox_webhooks_version";

/// The most webhooks refreshed one by one; past it the whole list is loaded.
const MAX_REFRESH: usize = 1000;

/// Two whole reloads are at least this far apart.
const FULL_RELOAD_SPACING: Duration = Duration::from_millis(250);

/// What a run of notifications asks for, coalesced.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    events: bool,
    webhooks: Webhooks,
    /// The newest change number announced.
    version: Option<i64>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Webhooks {
    #[default]
    None,
    Some(HashSet<i64>),
    All,
}

impl Changes {
    /// Adds one notification: a comma-separated list of webhook ids names
    /// those, an empty payload means all of them, anything else is noise.
    fn add(&mut self, channel: &str, payload: &str) {
        if channel == WEBHOOKS_VERSION_CHANNEL {
            if let Ok(v) = payload.trim().parse::<i64>() {
                self.version = self.version.max(Some(v));
            }
            return;
        }
        if channel != WEBHOOKS_CHANNEL {
            self.events = true;
            return;
        }
        if payload.is_empty() {
            self.webhooks = Webhooks::All;
            return;
        }
        let Ok(ids) = payload
            .split(',')
            .map(|id| id.trim().parse::<i64>())
            .collect::<Result<Vec<i64>, _>>()
        else {
            return;
        };
        match &mut self.webhooks {
            Webhooks::All => {}
            Webhooks::Some(set) => set.extend(ids),
            none @ Webhooks::None => *none = Webhooks::Some(ids.into_iter().collect()),
        }
        if matches!(&self.webhooks, Webhooks::Some(set) if set.len() > MAX_REFRESH) {
            self.webhooks = Webhooks::All;
        }
    }
}

pub struct Listener {
    pub config: tokio_postgres::Config,
    pub pool: Pool,
    pub cache: Arc<WebhookCache>,
    /// Woken when events may be waiting.
    pub events: Arc<Notify>,
    /// True while the LISTEN connection is up.
    pub connected: Arc<AtomicBool>,
}

impl Listener {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut first = true;
        let mut last_full: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            // Errors as crate::Error, whose text carries the reason.
            let connect = || async { Ok::<_, Error>(self.config.connect(NoTls).await?) };
            let attempt = connect
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(200))
                        .with_max_delay(Duration::from_secs(10))
                        .with_jitter()
                        .without_max_times(),
                )
                .notify(|e, after| {
                    tracing::warn!(error = %e, retry_in = ?after, "LISTEN connection to the database failed; retrying");
                });
            let (client, mut connection) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = attempt => match r {
                    Ok(c) => c,
                    Err(_) => continue,
                },
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            let pump = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx
                                .send((n.channel().to_owned(), n.payload().to_owned()))
                                .is_err()
                            {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Some(e),
                    }
                }
                None
            });
            let listen = format!(
                "LISTEN {EVENTS_CHANNEL}; LISTEN {WEBHOOKS_CHANNEL}; LISTEN {WEBHOOKS_VERSION_CHANNEL}"
            );
            if let Err(e) = client.batch_execute(&listen).await {
                tracing::warn!(error = %Error::from(e), "LISTEN failed; reconnecting");
                pump.abort();
                continue;
            }
            self.connected.store(true, Ordering::Relaxed);
            if first {
                tracing::info!("listening for new events");
            } else {
                tracing::info!("LISTEN connection re-established");
            }
            first = false;
            self.reload_cache(&mut last_full).await;
            self.events.notify_one();

            let mut pump = pump;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        pump.abort();
                        return;
                    }
                    first = rx.recv() => {
                        let Some((channel, payload)) = first else { break };
                        let mut changes = Changes::default();
                        changes.add(&channel, &payload);
                        while let Ok((channel, payload)) = rx.try_recv() {
                            changes.add(&channel, &payload);
                        }
                        self.apply(changes, &mut rx, &mut last_full).await;
                    }
                    ended = &mut pump => {
                        let reason = match ended {
                            Ok(Some(e)) => Error::from(e).to_string(),
                            _ => "connection closed".to_owned(),
                        };
                        tracing::warn!(%reason, "LISTEN connection lost; reconnecting");
                        break;
                    }
                }
            }
            self.connected.store(false, Ordering::Relaxed);
            drop(client);
        }
    }

    /// Refreshes what the notifications named, then wakes the dispatcher.
    /// A whole reload waits out its spacing first, taking in whatever comes
    /// meanwhile.
    async fn apply(
        &self,
        mut changes: Changes,
        rx: &mut mpsc::UnboundedReceiver<(String, String)>,
        last_full: &mut Option<Instant>,
    ) {
        if changes.webhooks == Webhooks::All {
            if let Some(at) = *last_full {
                tokio::time::sleep_until((at + FULL_RELOAD_SPACING).into()).await;
                while let Ok((channel, payload)) = rx.try_recv() {
                    changes.add(&channel, &payload);
                }
            }
        }
        match changes.webhooks {
            Webhooks::None => {}
            Webhooks::Some(ids) => {
                let ids: Vec<i64> = ids.into_iter().collect();
                if let Err(e) = self.cache.refresh(&self.pool, &ids).await {
                    tracing::warn!(error = %e, "refreshing webhooks failed; reloading them all");
                    self.reload_cache(last_full).await;
                }
            }
            Webhooks::All => self.reload_cache(last_full).await,
        }
        if let Some(version) = changes.version {
            // When this fails, a fan-out round that needs the change
            // reloads the cache after a while.
            if let Err(e) = self.cache.applied(&self.pool, version).await {
                tracing::warn!(error = %e, version, "could not confirm a webhook change");
            }
        }
        if changes.events {
            self.events.notify_one();
        }
    }

    async fn reload_cache(&self, last_full: &mut Option<Instant>) {
        *last_full = Some(Instant::now());
        if let Err(e) = self.cache.reload(&self.pool).await {
            tracing::warn!(error = %e, "reloading webhooks failed; keeping the previous list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coalesce(notifications: &[(&str, &str)]) -> Changes {
        let mut changes = Changes::default();
        for (channel, payload) in notifications {
            changes.add(channel, payload);
        }
        changes
    }

    #[test]
    fn notifications_coalesce_into_one_refresh() {
        let ids = |v: &[i64]| Webhooks::Some(v.iter().copied().collect());
        let w = WEBHOOKS_CHANNEL;
        type Row<'a> = (Vec<(&'a str, &'a str)>, bool, Webhooks);
        let table: Vec<Row> = vec![
            (vec![], false, Webhooks::None),
            (vec![(EVENTS_CHANNEL, ""); 3], true, Webhooks::None),
            (vec![(w, "3"), (w, "4,5"), (w, "3")], false, ids(&[3, 4, 5])),
            (vec![(w, "3"), (w, ""), (w, "4")], false, Webhooks::All),
            (
                vec![(w, "x"), (w, "1;drop"), (EVENTS_CHANNEL, "")],
                true,
                Webhooks::None,
            ),
        ];
        for (notifications, events, webhooks) in table {
            let got = coalesce(&notifications);
            assert_eq!(
                got,
                Changes {
                    events,
                    webhooks,
                    version: None
                },
                "{notifications:?}"
            );
        }
    }

    #[test]
    fn the_newest_version_counts_and_noise_does_not() {
        let v = WEBHOOKS_VERSION_CHANNEL;
        let got = coalesce(&[(v, "7"), (WEBHOOKS_CHANNEL, "3"), (v, "x"), (v, "5")]);
        assert_eq!(got.version, Some(7));
        assert_eq!(got.webhooks, Webhooks::Some([3].into_iter().collect()));
        assert!(!got.events);
        assert_eq!(coalesce(&[(v, ""), (v, "1,2")]).version, None);
    }

    #[test]
    fn too_many_ids_load_everything() {
        let many: Vec<String> = (0..=MAX_REFRESH as i64).map(|i| i.to_string()).collect();
        let one_by_one: Vec<(&str, &str)> = many
            .iter()
            .map(|id| (WEBHOOKS_CHANNEL, id.as_str()))
            .collect();
        assert_eq!(coalesce(&one_by_one).webhooks, Webhooks::All);
    }
}
