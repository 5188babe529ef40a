//! One attempt of one delivery, in three typed stages: `prepare` finds the
//! webhook and builds the signed request, `call` sends it, `handle` turns
//! the exchange into the record the writer stores.
//!
//! Each stage takes the previous one's value, so a delivery that cannot be
//! sent (its webhook disabled or deleted since it was claimed) stops at
//! `prepare` with a cancellation, and the loop only ever sees a record.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::Request;
use http_body_util::Full;
use outboxd_core::outcome::{
    classify, describe_status, error_text, log_millis, AttemptResult, TransportError, Verdict,
};
use outboxd_core::retry::RetryPolicy;
use outboxd_db::{AttemptRecord, Claimed, Pool, WebhookCache};
use outboxd_metrics as names;

use crate::send::{self, Exchange};
use crate::{request, Clients};

/// What every attempt needs, shared by all of them.
#[derive(Clone)]
pub(crate) struct Context {
    /// The platform's client and the tenants' (whose SSRF guard is always on).
    pub clients: Clients,
    pub cache: Arc<WebhookCache>,
    pub pool: Pool,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

/// A request ready to go, or why there is none.
pub(crate) struct Prepared {
    delivery: Claimed,
    started_at: DateTime<Utc>,
    /// The URL tried, as the delivery log records it.
    url: String,
    /// The webhook's rate limit, which a 429 may lower for a while.
    rate_limit: Option<i32>,
    /// Whether the webhook is a tenant's: its requests go through the
    /// client whose SSRF guard is always on.
    tenant: bool,
    request: Result<Request<Full<Bytes>>, request::BuildError>,
}

/// What came back.
pub(crate) struct Called {
    delivery: Claimed,
    started_at: DateTime<Utc>,
    url: String,
    exchange: Exchange,
}

/// Runs the three stages.
pub(crate) async fn run(ctx: Context, delivery: Claimed) -> AttemptRecord {
    match prepare(&ctx, delivery).await {
        Ok(prepared) => handle(call(&ctx, prepared).await, &ctx.retry),
        Err(cancelled) => cancelled,
    }
}

/// Finds the delivery's webhook and builds its request. A webhook gone from
/// the cache (disabled or deleted since the claim) cancels the delivery.
async fn prepare(ctx: &Context, delivery: Claimed) -> Result<Prepared, AttemptRecord> {
    let started_at = Utc::now();
    let mut webhook = ctx.cache.get(delivery.webhook_id);
    if webhook.is_none() {
        // Disabled or deleted since fan-out, or the cache is behind: ask once.
        let _ = ctx.cache.refresh(&ctx.pool, &[delivery.webhook_id]).await;
        webhook = ctx.cache.get(delivery.webhook_id);
    }
    let Some(webhook) = webhook else {
        return Err(cancelled(&delivery, started_at));
    };
    let request = request::build(&webhook, &delivery, started_at.timestamp());
    Ok(Prepared {
        delivery,
        started_at,
        url: webhook.url.clone(),
        rate_limit: webhook.rate_limit,
        tenant: webhook.tenant.is_some(),
        request,
    })
}

async fn call(ctx: &Context, prepared: Prepared) -> Called {
    let exchange = match prepared.request {
        Ok(req) => {
            let client = ctx.clients.for_tenant(prepared.tenant);
            send::send(client, req, ctx.request_timeout).await
        }
        Err(e) => Exchange {
            result: AttemptResult::Transport(TransportError::Other(e.to_string())),
            response_body: None,
            elapsed: Duration::ZERO,
        },
    };
    metrics::histogram!(names::ATTEMPT_DURATION).record(exchange.elapsed.as_secs_f64());
    crate::rate::after_answer(
        &ctx.pool,
        prepared.delivery.webhook_id,
        prepared.rate_limit,
        &exchange.result,
    );
    Called {
        delivery: prepared.delivery,
        started_at: prepared.started_at,
        url: prepared.url,
        exchange,
    }
}

/// Classifies the exchange (delivered, retry when, failed) and makes the
/// record of it.
fn handle(called: Called, retry: &RetryPolicy) -> AttemptRecord {
    let Called {
        delivery,
        started_at,
        url,
        exchange,
    } = called;
    let verdict = classify(
        &exchange.result,
        delivery.attempt as u32,
        retry,
        rand::random::<f64>(),
    );
    if verdict == Verdict::Delivered {
        let latency = (Utc::now() - delivery.created_at)
            .to_std()
            .unwrap_or_default();
        metrics::histogram!(names::DELIVERY_LATENCY).record(latency.as_secs_f64());
    } else {
        let reason = error_text(&exchange.result).unwrap_or_else(|| match &exchange.result {
            AttemptResult::Response { status, .. } => format!("HTTP {status}"),
            AttemptResult::Transport(t) => t.to_string(),
        });
        tracing::info!(webhook_id = delivery.webhook_id, event_id = delivery.event_id,
            delivery_id = delivery.delivery_id, attempt = delivery.attempt, %reason,
            outcome = verdict.outcome().as_str(), "delivery attempt failed");
    }
    let status_code = match &exchange.result {
        AttemptResult::Response { status, .. } => Some(i32::from(*status)),
        AttemptResult::Transport(_) => None,
    };
    let error = error_text(&exchange.result).or_else(|| {
        status_code
            .and_then(|s| describe_status(s as u16))
            .map(str::to_owned)
    });
    AttemptRecord {
        duration_ms: log_millis(exchange.elapsed),
        url: Some(url),
        status_code,
        error,
        response_body: exchange.response_body,
        outcome: verdict.outcome(),
        retry_in_ms: match verdict {
            Verdict::Retry { after } => Some(after.as_secs_f64() * 1000.0),
            _ => None,
        },
        gone: verdict == Verdict::Gone,
        ..base(&delivery, started_at)
    }
}

/// A delivery cancelled unsent: its webhook is disabled, deleted, or just
/// answered 410. No attempt is logged for it.
pub(crate) fn cancelled(delivery: &Claimed, at: DateTime<Utc>) -> AttemptRecord {
    AttemptRecord {
        cancelled: true,
        ..base(delivery, at)
    }
}

/// The fields every record takes from its delivery; a failure with no
/// request made until a stage says otherwise.
fn base(delivery: &Claimed, started_at: DateTime<Utc>) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.delivery_id,
        lease: delivery.lease,
        event_id: delivery.event_id,
        webhook_id: delivery.webhook_id,
        attempt: delivery.attempt,
        started_at,
        duration_ms: 0.0,
        url: None,
        status_code: None,
        error: None,
        response_body: None,
        outcome: Verdict::Failed.outcome(),
        retry_in_ms: None,
        gone: false,
        cancelled: false,
        ordering_key: delivery.ordering_key.clone(),
    }
}
