//! The LISTEN connection: one per daemon, outside the pool.
//!
//! deadpool drives pooled connections itself and drops notifications, so
//! this task owns a plain connection and polls its messages. Notifications
//! are hints: on `outbox_events` it wakes the dispatcher, on
//! `outbox_webhooks` it reloads the webhook cache first (so an event sent
//! right after a webhook change is matched against the change). When the
//! connection drops it reconnects with backoff (backon), then reloads the
//! cache and wakes the dispatcher, since anything sent meanwhile was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use crate::{Error, Pool, WebhookCache};

pub const EVENTS_CHANNEL: &str = "outbox_events";
pub const WEBHOOKS_CHANNEL: &str = "outbox_webhooks";

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
                            if tx.send(n.channel().to_owned()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Some(e),
                    }
                }
                None
            });
            let listen = format!("LISTEN {EVENTS_CHANNEL}; LISTEN {WEBHOOKS_CHANNEL}");
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
            self.refresh_cache().await;
            self.events.notify_one();

            let mut pump = pump;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        pump.abort();
                        return;
                    }
                    channel = rx.recv() => match channel.as_deref() {
                        Some(WEBHOOKS_CHANNEL) => self.refresh_cache().await,
                        Some(_) => self.events.notify_one(),
                        None => break,
                    },
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

    async fn refresh_cache(&self) {
        if let Err(e) = self.cache.reload(&self.pool).await {
            tracing::warn!(error = %e, "reloading webhooks failed; keeping the previous list");
        }
    }
}
