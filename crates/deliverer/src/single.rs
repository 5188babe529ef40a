//! One attempt outside the daemon's loop, for `outboxd test-event`: the same
//! request building (`request::build`) and sending (`send::send`) as the
//! worker, so a test shows exactly what a receiver gets, but no claim, no
//! lease and no retry: the caller records the outcome itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::outcome::{AttemptResult, TransportError};
use outboxd_db::{Claimed, Webhook};

use crate::send::Exchange;
use crate::{request, send, Clients};

/// Sends `delivery` to `webhook` once, signed at the current time; returns
/// when the attempt started and what came back.
pub async fn attempt_once(
    clients: &Clients,
    webhook: &Webhook,
    delivery: &Claimed,
    timeout: Duration,
) -> (DateTime<Utc>, Exchange) {
    let started_at = Utc::now();
    let exchange = match request::build(webhook, delivery, started_at.timestamp()) {
        Ok(req) => send::send(clients.for_tenant(webhook.tenant.is_some()), req, timeout).await,
        // The same record as the worker writes for a request it cannot build.
        Err(e) => Exchange {
            result: AttemptResult::Transport(TransportError::Other(e.to_string())),
            response_body: None,
            elapsed: Duration::ZERO,
        },
    };
    (started_at, exchange)
}
