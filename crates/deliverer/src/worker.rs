//! The delivery loop: claim due deliveries, send them concurrently, hand the
//! results to the writer.
//!
//! All bookkeeping of what is in flight lives in this one loop (no locks).
//! Each webhook has its running requests (at most `webhook_concurrency`,
//! and `concurrency` over all webhooks) and a short queue of leased
//! deliveries waiting for a slot: a claim (or the fan-out, see
//! `outboxd_db::handoff`) fills each webhook's window of `WINDOW` times
//! its concurrency, less what it holds, so claims are large and rare, a
//! finished request starts the next one at once from the queue, and a slow
//! endpoint fills only its own slots. A claim runs as a task of its own
//! while the loop goes on starting and finishing requests. A queued
//! delivery whose lease could run out before its request would is handed
//! back unsent. On shutdown the loop stops claiming, lets requests finish
//! within the grace period, and hands back the leases of what it had to
//! abandon or never started.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use outboxd_core::breaker::{Breaker, BreakerPolicy, State, Transition};
use outboxd_core::outcome::{
    classify, error_text, is_blocked, log_millis, AttemptResult, Outcome, TransportError, Verdict,
};
use outboxd_core::retry::RetryPolicy;
use outboxd_db::{claim, health, AttemptRecord, Claimed, Handed, Pool, Room, WebhookCache};
use outboxd_metrics as names;
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::rate::RateGate;
use crate::writer::ResultWriter;
use crate::{request, send, Clients};

#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_size: i64,
    pub concurrency: usize,
    pub webhook_concurrency: usize,
    pub lease: Duration,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    pub shutdown_grace: Duration,
    /// When a webhook failing again and again is paused.
    pub breaker: BreakerPolicy,
    /// Disable a webhook failing for longer than this; zero never does.
    pub disable_failing_after: Duration,
}

pub struct Deliverer {
    pub pool: Pool,
    pub cache: Arc<WebhookCache>,
    pub clients: Clients,
    pub settings: Settings,
    /// Notified when deliveries may be due (new fan-out).
    pub ready: Arc<Notify>,
    /// This loop's room per webhook, published for the fan-out.
    pub room: Arc<Room>,
    /// Deliveries the fan-out claimed for this loop.
    pub handed: Option<mpsc::UnboundedReceiver<Handed>>,
}

/// A webhook's window, in request slots: it holds (running and queued,
/// leased) up to this many times the requests it may have running, so the
/// next deliveries are at hand when a request finishes and the fan-out can
/// hand over batches of a useful size: a smaller window makes hand-overs
/// and claims small and frequent, a larger one only holds more leases
/// (docs/performance.md has the method to measure it). A queued delivery
/// waits at most a lease less the request timeout before
/// it is handed back unsent, and `QUEUE_BYTES` bounds the memory.
pub const WINDOW: usize = 16;

/// The payload bytes queued deliveries may hold before claims stop: with
/// large payloads the windows alone would let memory grow to gigabytes.
/// At most one more batch comes on top.
const QUEUE_BYTES: usize = 32 << 20;

/// How often expired leases of crashed workers are put back.
const REAP_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct InFlight {
    /// Requests running, all webhooks together.
    total: usize,
    /// Requests running per webhook.
    per_webhook: HashMap<i64, usize>,
    /// Leased deliveries waiting for a slot of their webhook, oldest first.
    queued: HashMap<i64, VecDeque<Queued>>,
    queued_total: usize,
    /// Payload bytes of the queued deliveries: past `QUEUE_BYTES` no more
    /// are claimed, whatever room the windows have.
    queued_bytes: usize,
    leases: HashMap<tokio::task::Id, (i64, i64, i64)>,
    /// Webhooks that just answered 410, and when: claimed no more until the
    /// cache shows them disabled (or a lease length passes, in case the
    /// disable was never written), so no request follows the 410 while the
    /// writer is still disabling the webhook.
    gone: HashMap<i64, Instant>,
    /// Circuit breakers of the webhooks with recent failures (a healthy
    /// webhook has none).
    breakers: HashMap<i64, Breaker>,
    /// Tokens of rate-limited webhooks (`crate::rate`).
    rate: RateGate,
}

struct Queued {
    delivery: Claimed,
    claimed_at: Instant,
}

impl InFlight {
    fn running(&self, webhook_id: i64) -> usize {
        self.per_webhook.get(&webhook_id).copied().unwrap_or(0)
    }

    fn enqueue(&mut self, delivery: Claimed, claimed_at: Instant) {
        self.queued_total += 1;
        self.queued_bytes += delivery.payload.len();
        self.queued
            .entry(delivery.webhook_id)
            .or_default()
            .push_back(Queued {
                delivery,
                claimed_at,
            });
    }

    /// The webhook's oldest queued delivery, if any.
    fn dequeue(&mut self, webhook_id: i64) -> Option<Queued> {
        let queue = self.queued.get_mut(&webhook_id)?;
        let next = queue.pop_front();
        if queue.is_empty() {
            self.queued.remove(&webhook_id);
        }
        let next = next?;
        self.queued_total -= 1;
        self.queued_bytes -= next.delivery.payload.len();
        Some(next)
    }

    /// Removes the webhook's queue and returns what it held.
    fn take_queue(&mut self, webhook_id: i64) -> Vec<Claimed> {
        let queue = self.queued.remove(&webhook_id).unwrap_or_default();
        self.queued_total -= queue.len();
        queue
            .into_iter()
            .map(|q| {
                self.queued_bytes -= q.delivery.payload.len();
                q.delivery
            })
            .collect()
    }

    fn held(&self, webhook_id: i64) -> usize {
        self.running(webhook_id) + self.queued.get(&webhook_id).map_or(0, VecDeque::len)
    }

    /// How many deliveries the webhook may hold, running and queued:
    /// `WINDOW` times what it may have running.
    fn window(&self, webhook_id: i64, settings: &Settings, now: Instant) -> usize {
        WINDOW * self.limit(webhook_id, settings, now)
    }

    /// How many more deliveries the webhook may hold (the rest of its
    /// window; none while the queued payloads fill their budget).
    fn room(&self, webhook_id: i64, settings: &Settings, now: Instant) -> usize {
        if self.queued_bytes >= QUEUE_BYTES {
            return 0;
        }
        self.window(webhook_id, settings, now)
            .saturating_sub(self.held(webhook_id))
    }

    /// How many requests the webhook may have running now: none while it is
    /// paused or just answered 410, one probe when its pause is over.
    fn limit(&self, webhook_id: i64, settings: &Settings, now: Instant) -> usize {
        if self.gone.contains_key(&webhook_id) {
            return 0;
        }
        match self.breakers.get(&webhook_id).map(|b| b.state(now)) {
            None | Some(State::Closed) => settings.webhook_concurrency,
            Some(State::Open { .. }) => 0,
            Some(State::HalfOpen) => 1,
        }
    }
}

impl Deliverer {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut handed = self.handed.take();
        let settings = Arc::new(self.settings.clone());
        let (results_tx, results_rx) = mpsc::channel(settings.concurrency.max(64) * 2);
        let writer = tokio::spawn(
            ResultWriter {
                pool: self.pool.clone(),
                results: results_rx,
                lease: settings.lease,
            }
            .run(),
        );
        let mut tasks: JoinSet<AttemptRecord> = JoinSet::new();
        let mut in_flight = InFlight::default();
        let rate_granted = in_flight.rate.granted();
        // Whether the queue may hold due rows we have not claimed.
        let mut more = true;
        let mut last_reap = Instant::now() - REAP_EVERY;
        let mut db_failures = 0u32;
        // Deliveries held (running and queued) across all webhooks.
        let capacity = settings.concurrency * WINDOW;
        let claim_threshold = (capacity / 4).clamp(1, settings.batch_size as usize);

        // The claim under way runs beside the loop, which goes on starting
        // and finishing requests meanwhile: awaited in the loop, every
        // claim's round trip stalled them all. One at a time, so claims
        // never ask twice for the same room.
        let mut claiming: Option<JoinHandle<Result<Vec<Claimed>, outboxd_db::Error>>> = None;

        loop {
            let room = capacity.saturating_sub(in_flight.total + in_flight.queued_total);
            let worth_claiming =
                room >= claim_threshold || in_flight.total + in_flight.queued_total == 0;
            if claiming.is_none() && more && worth_claiming && !shutdown.is_cancelled() {
                in_flight.gone.retain(|&id, at| {
                    at.elapsed() < settings.lease && self.cache.get(id).is_some()
                });
                // A disabled webhook's breaker goes, so its last deliveries
                // are claimed and cancelled rather than held back forever.
                in_flight
                    .breakers
                    .retain(|&id, _| self.cache.get(id).is_some());
                let wants = self.wants(&in_flight, &settings);
                let limit = (room as i64).min(settings.batch_size);
                let (pool, lease) = (self.pool.clone(), settings.lease);
                claiming = Some(tokio::spawn(async move {
                    claim::claim(&pool, &wants, limit, lease).await
                }));
                // A finished request, a fan-out or the poll interval asks
                // again once this claim is back.
                more = false;
            }
            if last_reap.elapsed() >= REAP_EVERY && !shutdown.is_cancelled() {
                last_reap = Instant::now();
                in_flight.rate.tidy();
                match claim::reap_expired(&self.pool).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(deliveries = n, "expired leases put back in the queue");
                        more = true;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "reaping expired leases failed"),
                }
                match claim::cancel_orphans(&self.pool).await {
                    Ok(n) if n > 0 => tracing::info!(
                        deliveries = n,
                        "waiting deliveries of disabled or deleted webhooks cancelled"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "cancelling orphaned deliveries failed"),
                }
            }
            self.publish_room(&in_flight, &settings);
            let backoff = if db_failures > 0 {
                outboxd_core::retry::database_backoff(db_failures)
            } else {
                settings.poll_interval
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    more |= self.finish(done, &mut tasks, &mut in_flight, &results_tx, &settings).await;
                    while let Some(done) = tasks.try_join_next_with_id() {
                        more |= self.finish(done, &mut tasks, &mut in_flight, &results_tx, &settings).await;
                    }
                    metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(in_flight.total as f64);
                }
                joined = async { claiming.as_mut().expect("guarded").await }, if claiming.is_some() => {
                    claiming = None;
                    let found = self.claimed(joined, &mut in_flight, &mut db_failures);
                    // After a failure the next claim waits for the backoff.
                    more = db_failures == 0 && (more || found);
                    self.pump(&mut tasks, &mut in_flight, &settings, None);
                    metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(in_flight.total as f64);
                }
                Some(h) = recv(&mut handed) => {
                    self.accept(h, &mut in_flight);
                    while let Some(h) = handed.as_mut().and_then(|rx| rx.try_recv().ok()) {
                        self.accept(h, &mut in_flight);
                    }
                    self.pump(&mut tasks, &mut in_flight, &settings, None);
                    metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(in_flight.total as f64);
                }
                _ = rate_granted.notified() => {
                    self.pump(&mut tasks, &mut in_flight, &settings, None);
                    metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(in_flight.total as f64);
                }
                _ = self.ready.notified() => more = true,
                _ = tokio::time::sleep(backoff) => more = true,
            }
        }

        // Shutdown: no more claims, nor deliveries from the fan-out (what
        // they leased already is handed back below).
        if let Some(task) = claiming.take() {
            self.claimed(task.await, &mut in_flight, &mut db_failures);
        }
        if let Some(mut rx) = handed.take() {
            rx.close();
            while let Ok(h) = rx.try_recv() {
                self.accept(h, &mut in_flight);
            }
        }
        // Let what is in flight finish in time.
        if !tasks.is_empty() {
            tracing::info!(requests = in_flight.total, grace = ?settings.shutdown_grace,
                "shutting down: waiting for requests in flight");
        }
        let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(done)) => {
                    self.finish(done, &mut tasks, &mut in_flight, &results_tx, &settings)
                        .await;
                }
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    break;
                }
            }
        }
        // What could not finish goes back to the queue without spending an attempt.
        while tasks.join_next().await.is_some() {}
        let abandoned: Vec<(i64, i64)> = in_flight
            .leases
            .values()
            .map(|&(delivery, lease, _)| (delivery, lease))
            .chain(
                in_flight
                    .queued
                    .values()
                    .flatten()
                    .map(|q| (q.delivery.delivery_id, q.delivery.lease)),
            )
            .collect();
        drop(results_tx);
        let _ = writer.await;
        if !abandoned.is_empty() {
            match claim::hand_back(&self.pool, &abandoned).await {
                Ok(n) => tracing::info!(deliveries = n, "unfinished deliveries handed back"),
                Err(e) => tracing::warn!(error = %e,
                    "could not hand back unfinished deliveries; their leases will expire and they will be retried"),
            }
        }
        metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(0.0);
    }

    /// Queues what a claim leased. Says whether more may be due: the claim
    /// found some.
    fn claimed(
        &self,
        joined: Result<Result<Vec<Claimed>, outboxd_db::Error>, tokio::task::JoinError>,
        in_flight: &mut InFlight,
        db_failures: &mut u32,
    ) -> bool {
        match joined {
            Ok(Ok(batch)) => {
                *db_failures = 0;
                // An empty claim means nothing is due for the webhooks with
                // room.
                let found = !batch.is_empty();
                let claimed_at = Instant::now();
                for delivery in batch {
                    in_flight.enqueue(delivery, claimed_at);
                }
                found
            }
            Ok(Err(e)) => {
                *db_failures += 1;
                metrics::counter!(names::DATABASE_ERRORS).increment(1);
                tracing::warn!(error = %e, "claiming deliveries failed");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "the claim task failed");
                false
            }
        }
    }

    /// What each webhook may claim: its window, less what it holds (and
    /// what the fan-out is handing over), asked only when at least a quarter
    /// of that is free, so claims come in batches. Shuffled, so that when the claim's limit
    /// cuts the list short no webhook is always last.
    fn wants(&self, in_flight: &InFlight, settings: &Settings) -> Vec<(i64, i64)> {
        let now = Instant::now();
        let mut wants: Vec<(i64, i64)> = self
            .cache
            .snapshot()
            .keys()
            .filter_map(|&id| {
                let window = in_flight.window(id, settings, now);
                let in_transit = self.room.in_transit(id);
                let room = in_flight.room(id, settings, now).saturating_sub(in_transit);
                let idle = in_flight.held(id) + in_transit == 0;
                let worth = room > 0 && (room >= (window / 4).max(1) || idle);
                worth.then_some((id, room as i64))
            })
            .collect();
        use rand::seq::SliceRandom;
        wants.shuffle(&mut rand::rng());
        wants
    }

    /// Queues what the fan-out claimed, and books the room it took.
    fn accept(&self, h: Handed, in_flight: &mut InFlight) {
        let mut used: HashMap<i64, usize> = HashMap::new();
        for delivery in h.claimed {
            *used.entry(delivery.webhook_id).or_default() += 1;
            in_flight.enqueue(delivery, h.at);
        }
        for (webhook_id, taken) in h.taken {
            self.room.arrived(
                webhook_id,
                taken,
                used.get(&webhook_id).copied().unwrap_or(0),
            );
        }
    }

    /// Tells the fan-out how much room each webhook has: those with
    /// deliveries held, paused or gone are listed, all others have the
    /// default window.
    fn publish_room(&self, in_flight: &InFlight, settings: &Settings) {
        if in_flight.queued_bytes >= QUEUE_BYTES {
            self.room.publish_none();
            return;
        }
        let now = Instant::now();
        let room = in_flight
            .per_webhook
            .keys()
            .chain(in_flight.queued.keys())
            .chain(in_flight.breakers.keys())
            .chain(in_flight.gone.keys())
            .map(|&id| (id, in_flight.room(id, settings, now)))
            .collect();
        self.room.publish(room);
    }

    /// Starts queued deliveries while their webhooks (only `webhook` if
    /// given) and the global limit have free slots. A delivery whose lease
    /// could expire before its request would time out is handed back
    /// unsent; so is the queue of a webhook whose breaker just opened.
    fn pump(
        &self,
        tasks: &mut JoinSet<AttemptRecord>,
        in_flight: &mut InFlight,
        settings: &Arc<Settings>,
        webhook: Option<i64>,
    ) {
        let now = Instant::now();
        let webhooks: Vec<i64> = match webhook {
            Some(id) => vec![id],
            None => in_flight.queued.keys().copied().collect(),
        };
        let mut hand_back = Vec::new();
        for webhook_id in webhooks {
            let paused = matches!(
                in_flight.breakers.get(&webhook_id).map(|b| b.state(now)),
                Some(State::Open { .. })
            );
            let limit = in_flight.limit(webhook_id, settings, now);
            let rate_limited = self
                .cache
                .get(webhook_id)
                .is_some_and(|w| w.rate_limit.is_some());
            while in_flight.total < settings.concurrency
                && (paused || in_flight.running(webhook_id) < limit)
            {
                if rate_limited && !paused {
                    let waiting = in_flight.queued.get(&webhook_id).map_or(0, VecDeque::len);
                    if waiting == 0 || !in_flight.rate.try_take(&self.pool, webhook_id, waiting) {
                        break;
                    }
                }
                let Some(next) = in_flight.dequeue(webhook_id) else {
                    break;
                };
                if paused || next.claimed_at.elapsed() + settings.request_timeout >= settings.lease
                {
                    hand_back.push((next.delivery.delivery_id, next.delivery.lease));
                    continue;
                }
                self.start(tasks, in_flight, next.delivery, settings);
            }
        }
        if !hand_back.is_empty() {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                match claim::hand_back(&pool, &hand_back).await {
                    Ok(n) => {
                        tracing::debug!(deliveries = n, "queued deliveries handed back unsent")
                    }
                    Err(e) => tracing::debug!(error = %e,
                        "could not hand back queued deliveries; their leases will expire"),
                }
            });
        }
    }

    fn start(
        &self,
        tasks: &mut JoinSet<AttemptRecord>,
        in_flight: &mut InFlight,
        delivery: Claimed,
        settings: &Arc<Settings>,
    ) {
        let (id, lease, webhook_id) = (delivery.delivery_id, delivery.lease, delivery.webhook_id);
        let handle = tasks.spawn(attempt(
            self.clients.clone(),
            self.cache.clone(),
            self.pool.clone(),
            delivery,
            settings.clone(),
        ));
        in_flight.total += 1;
        *in_flight.per_webhook.entry(webhook_id).or_default() += 1;
        in_flight
            .leases
            .insert(handle.id(), (id, lease, webhook_id));
    }

    /// Books a finished request, starts the next queued ones, and says
    /// whether a claim is worth making: the webhook's window now has a share
    /// free (counted once, as it crosses that mark).
    async fn finish(
        &self,
        done: Result<(tokio::task::Id, AttemptRecord), tokio::task::JoinError>,
        tasks: &mut JoinSet<AttemptRecord>,
        in_flight: &mut InFlight,
        results: &mpsc::Sender<AttemptRecord>,
        settings: &Arc<Settings>,
    ) -> bool {
        let (task_id, record) = match done {
            Ok((id, record)) => (id, Some(record)),
            Err(e) => (e.id(), None),
        };
        let was_full = in_flight.total >= settings.concurrency;
        let mut webhook = None;
        if let Some((_, _, webhook_id)) = in_flight.leases.remove(&task_id) {
            in_flight.total -= 1;
            webhook = Some(webhook_id);
            if let Some(n) = in_flight.per_webhook.get_mut(&webhook_id) {
                *n -= 1;
                if *n == 0 {
                    in_flight.per_webhook.remove(&webhook_id);
                }
            }
        }
        // A 410 unsubscribes: what waits in the webhook's queue is
        // cancelled unsent, as the disable cancels what waits in the table.
        let mut cancelled = Vec::new();
        if let Some(record) = &record {
            if record.gone {
                in_flight.gone.insert(record.webhook_id, Instant::now());
                let now = Utc::now();
                cancelled.extend(
                    in_flight
                        .take_queue(record.webhook_id)
                        .iter()
                        .map(|delivery| {
                            self::record(
                                delivery,
                                now,
                                Duration::ZERO,
                                None,
                                None,
                                Verdict::Failed,
                                true,
                            )
                        }),
                );
            } else if !record.cancelled && !record.error.as_deref().is_some_and(is_blocked) {
                // A target refused by the SSRF guard was never contacted:
                // there is no failing receiver to protect, and a pause would
                // hold its deliveries back after the admin allows it.
                self.observe(record, in_flight);
            }
        }
        let mut freed = false;
        if let Some(webhook_id) = webhook {
            // When the global limit was what held the others back, any
            // webhook's queue may start now; else only this one's.
            self.pump(
                tasks,
                in_flight,
                settings,
                (!was_full).then_some(webhook_id),
            );
            let window = WINDOW * settings.webhook_concurrency;
            freed = in_flight.held(webhook_id) + (window / 4).max(1) == window;
        }
        // Backpressure: when the database is slow, sending waits for it.
        for record in record.into_iter().chain(cancelled) {
            let _ = results.send(record).await;
        }
        freed
    }

    /// Feeds an attempt's result to its webhook's circuit breaker and acts
    /// on what that changes: a pause is written to the database (so every
    /// replica holds back the waiting deliveries), a recovery clears it.
    fn observe(&self, record: &AttemptRecord, in_flight: &mut InFlight) {
        let policy = &self.settings.breaker;
        if policy.threshold == 0 {
            return;
        }
        let now = Instant::now();
        let webhook_id = record.webhook_id;
        let success = record.outcome == Outcome::Delivered;
        if success && !in_flight.breakers.contains_key(&webhook_id) {
            // The common case: a healthy webhook has no breaker to update.
            return;
        }
        let breaker = in_flight.breakers.entry(webhook_id).or_default();
        let transition = breaker.record(success, now, policy);
        if breaker.is_idle() {
            in_flight.breakers.remove(&webhook_id);
        }
        let pool = self.pool.clone();
        match transition {
            None => return,
            Some(Transition::Opened { until, failures }) => {
                let pause = until - now;
                let reason = record
                    .error
                    .clone()
                    .unwrap_or_else(|| match record.status_code {
                        Some(status) => format!("HTTP {status}"),
                        None => "unknown".into(),
                    });
                tracing::warn!(webhook_id, failures, pause = %humantime::format_duration(pause),
                    last_error = %reason,
                    "webhook paused after failures in a row; its waiting deliveries keep their attempts");
                metrics::counter!(names::WEBHOOK_PAUSES).increment(1);
                let disable_after = self.settings.disable_failing_after;
                // The queue goes back after the pause is written, so it
                // waits for the pause's end like the rest (no replica
                // takes it meanwhile).
                let queued: Vec<(i64, i64)> = in_flight
                    .take_queue(webhook_id)
                    .iter()
                    .map(|d| (d.delivery_id, d.lease))
                    .collect();
                tokio::spawn(async move {
                    let paused =
                        health::pause(&pool, webhook_id, pause, &reason, disable_after).await;
                    if let Err(e) = claim::hand_back(&pool, &queued).await {
                        tracing::debug!(webhook_id, error = %e,
                            "could not hand back the paused webhook's queue; its leases will expire");
                    }
                    match paused {
                        Ok(p) if p.disabled => {
                            metrics::counter!(names::WEBHOOKS_DISABLED_TOTAL).increment(1);
                            tracing::warn!(webhook_id, failing_for_more_than = %humantime::format_duration(disable_after),
                                "webhook disabled: it kept failing with no successful delivery");
                        }
                        Ok(p) => tracing::debug!(
                            webhook_id,
                            deliveries = p.deliveries,
                            "deliveries paused"
                        ),
                        Err(e) => tracing::warn!(webhook_id, error = %e,
                            "could not record the pause; this process still holds the webhook's deliveries back"),
                    }
                });
            }
            Some(Transition::Closed) => {
                tracing::info!(webhook_id, "webhook delivered again; pause lifted");
                tokio::spawn(async move {
                    if let Err(e) = health::healthy(&pool, webhook_id).await {
                        tracing::debug!(webhook_id, error = %e, "could not clear the webhook's failure record");
                    }
                });
            }
        }
        let paused = in_flight
            .breakers
            .values()
            .filter(|b| b.state(now) != State::Closed)
            .count();
        metrics::gauge!(names::WEBHOOKS_PAUSED).set(paused as f64);
    }
}

/// The next hand-over from the fan-out; never, without one.
async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Handed>>) -> Option<Handed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One attempt of one delivery, from request to the record to write.
async fn attempt(
    clients: Clients,
    cache: Arc<WebhookCache>,
    pool: Pool,
    delivery: Claimed,
    settings: Arc<Settings>,
) -> AttemptRecord {
    let started_at = Utc::now();
    let mut webhook = cache.get(delivery.webhook_id);
    if webhook.is_none() {
        // Disabled or deleted since fan-out, or the cache is behind: ask once.
        let _ = cache.reload(&pool).await;
        webhook = cache.get(delivery.webhook_id);
    }
    let Some(webhook) = webhook else {
        return record(
            &delivery,
            started_at,
            Duration::ZERO,
            None,
            None,
            Verdict::Failed,
            true,
        );
    };
    let exchange = match request::build(&webhook, &delivery, started_at.timestamp()) {
        Ok(req) => {
            let client = clients.for_tenant(webhook.tenant.as_deref());
            send::send(client, req, settings.request_timeout).await
        }
        Err(e) => send::Exchange {
            result: AttemptResult::Transport(TransportError::Other(e.to_string())),
            response_body: None,
            elapsed: Duration::ZERO,
        },
    };
    metrics::histogram!(names::ATTEMPT_DURATION).record(exchange.elapsed.as_secs_f64());
    crate::rate::after_answer(&pool, webhook.id, webhook.rate_limit, &exchange.result);
    let verdict = classify(
        &exchange.result,
        delivery.attempt as u32,
        &settings.retry,
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
    let status = match &exchange.result {
        AttemptResult::Response { status, .. } => Some(i32::from(*status)),
        AttemptResult::Transport(_) => None,
    };
    let mut r = record(
        &delivery,
        started_at,
        exchange.elapsed,
        status,
        error_text(&exchange.result),
        verdict,
        false,
    );
    r.response_body = exchange.response_body;
    r.url = Some(webhook.url.clone());
    if r.error.is_none() {
        r.error = status
            .and_then(|s| outboxd_core::outcome::describe_status(s as u16))
            .map(str::to_owned);
    }
    r
}

fn record(
    delivery: &Claimed,
    started_at: chrono::DateTime<Utc>,
    elapsed: Duration,
    status_code: Option<i32>,
    error: Option<String>,
    verdict: Verdict,
    cancelled: bool,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: delivery.delivery_id,
        lease: delivery.lease,
        event_id: delivery.event_id,
        webhook_id: delivery.webhook_id,
        attempt: delivery.attempt,
        started_at,
        duration_ms: log_millis(elapsed),
        url: None,
        status_code,
        error,
        response_body: None,
        outcome: verdict.outcome(),
        retry_in_ms: match verdict {
            Verdict::Retry { after } => Some(after.as_secs_f64() * 1000.0),
            _ => None,
        },
        gone: verdict == Verdict::Gone,
        cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            batch_size: 500,
            concurrency: 256,
            webhook_concurrency: 4,
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(5),
            breaker: BreakerPolicy::default(),
            disable_failing_after: Duration::ZERO,
        }
    }

    fn delivery(id: i64, webhook_id: i64, payload_bytes: usize) -> Claimed {
        Claimed {
            delivery_id: id,
            lease: 1,
            attempt: 1,
            event_id: id,
            webhook_id,
            event_type: "bench.event".into(),
            payload: "x".repeat(payload_bytes),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_window_is_a_multiple_of_the_webhook_concurrency() {
        let (settings, now) = (settings(), Instant::now());
        let mut in_flight = InFlight::default();
        assert_eq!(in_flight.room(7, &settings, now), WINDOW * 4);
        in_flight.enqueue(delivery(1, 7, 10), now);
        assert_eq!(in_flight.room(7, &settings, now), WINDOW * 4 - 1);
        assert_eq!(in_flight.room(8, &settings, now), WINDOW * 4);
    }

    #[test]
    fn large_payloads_stop_claims_before_the_windows_are_full() {
        let (settings, now) = (settings(), Instant::now());
        let mut in_flight = InFlight::default();
        let mib = 1 << 20;
        for id in 0..(QUEUE_BYTES / mib) as i64 {
            assert!(in_flight.room(7, &settings, now) > 0);
            in_flight.enqueue(delivery(id, 7 + id % 2, mib), now);
        }
        assert_eq!(in_flight.room(7, &settings, now), 0, "budget spent");
        assert_eq!(in_flight.room(9, &settings, now), 0, "for every webhook");
    }
}
