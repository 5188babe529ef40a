//! The gate a request to a rate-limited webhook passes before it is sent.
//!
//! The delivery loop takes a token for each request it starts; tokens come
//! from the webhook's bucket in the database (`outboxd_db::rate`), which
//! every replica shares, in grants of a few tens of milliseconds' worth.
//! Only while a delivery waits for a token is a grant asked for, one at a
//! time per webhook, by a task of its own that comes back when the bucket
//! says; when it has tokens, it wakes the loop. Tokens not spent within
//! `STALE` are dropped rather than sent in a burst later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outboxd_core::outcome::AttemptResult;
use outboxd_db::Pool;
use tokio::sync::Notify;

/// How long granted tokens stay usable.
const STALE: Duration = Duration::from_secs(1);

/// How long an asking task keeps asking before it lets the loop decide
/// again whether tokens are still wanted.
const ASK_FOR: Duration = Duration::from_secs(2);

/// Waits between asks are kept within these bounds: never a busy loop, and
/// never so long that a bucket refilled meanwhile overflows unused.
const MIN_WAIT: Duration = Duration::from_millis(2);
const MAX_WAIT: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Local {
    tokens: u32,
    granted_at: Option<Instant>,
    asking: bool,
}

#[derive(Default, Clone)]
pub struct RateGate {
    buckets: Arc<Mutex<HashMap<i64, Local>>>,
    /// Notified when a grant arrives.
    granted: Arc<Notify>,
}

impl RateGate {
    /// Notified when tokens arrived: the loop starts what waits for them.
    pub fn granted(&self) -> Arc<Notify> {
        self.granted.clone()
    }

    /// Takes one token of the webhook for a request about to start. Without
    /// one, asks for up to `waiting` (if no ask is under way) and says no:
    /// the request stays queued until `granted` is notified.
    pub fn try_take(&self, pool: &Pool, webhook_id: i64, waiting: usize) -> bool {
        let mut buckets = self.buckets.lock().expect("rate gate lock");
        let local = buckets.entry(webhook_id).or_default();
        if local.granted_at.is_some_and(|at| at.elapsed() > STALE) {
            local.tokens = 0;
        }
        if local.tokens > 0 {
            local.tokens -= 1;
            return true;
        }
        if !local.asking {
            local.asking = true;
            let wanted = u32::try_from(waiting.max(1)).unwrap_or(u32::MAX);
            tokio::spawn(ask(self.clone(), pool.clone(), webhook_id, wanted));
        }
        false
    }

    fn add(&self, webhook_id: i64, tokens: u32) {
        let mut buckets = self.buckets.lock().expect("rate gate lock");
        let local = buckets.entry(webhook_id).or_default();
        local.asking = false;
        if tokens > 0 {
            local.tokens = tokens;
            local.granted_at = Some(Instant::now());
        }
    }

    /// Forgets webhooks that hold no tokens and ask for none.
    pub fn tidy(&self) {
        let mut buckets = self.buckets.lock().expect("rate gate lock");
        buckets.retain(|_, l| l.asking || l.tokens > 0);
    }
}

/// Asks the bucket for tokens until it gives some (or `ASK_FOR` passes),
/// then hands them to the gate and wakes the loop.
async fn ask(gate: RateGate, pool: Pool, webhook_id: i64, wanted: u32) {
    let until = Instant::now() + ASK_FOR;
    let mut tokens = 0;
    while Instant::now() < until {
        let wait = match outboxd_db::rate::take(&pool, webhook_id, wanted).await {
            Ok(grant) if grant.granted > 0 => {
                tokens = grant.granted;
                break;
            }
            Ok(grant) => grant.wait,
            Err(e) => {
                tracing::debug!(webhook_id, error = %e, "taking rate tokens failed");
                MAX_WAIT
            }
        };
        tokio::time::sleep(wait.clamp(MIN_WAIT, MAX_WAIT)).await;
    }
    gate.add(webhook_id, tokens);
    gate.granted.notify_one();
}

/// After a `429` with `Retry-After` from a rate-limited webhook: slows the
/// whole webhook down for that long, for every replica.
pub fn after_answer(pool: &Pool, webhook_id: i64, rate_limit: Option<i32>, result: &AttemptResult) {
    let AttemptResult::Response {
        status: 429,
        retry_after: Some(retry_after),
        ..
    } = result
    else {
        return;
    };
    if rate_limit.is_none() {
        return;
    }
    let (pool, how_long) = (pool.clone(), outboxd_core::rate::slowdown(*retry_after));
    tokio::spawn(async move {
        match outboxd_db::rate::slow_down(&pool, webhook_id, how_long).await {
            Ok(Some(rate)) => {
                tracing::info!(webhook_id, rate, for_how_long = %humantime::format_duration(how_long),
                "webhook answered 429 with Retry-After: its rate is lowered")
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(webhook_id, error = %e, "could not lower the webhook's rate"),
        }
    });
}
