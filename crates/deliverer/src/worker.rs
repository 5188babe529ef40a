//! The delivery loop: claim due deliveries, send them concurrently, hand the
//! results to the writer.
//!
//! The loop owns what is in flight (`in_flight`, no locks): each webhook's
//! running requests and a short queue of leased deliveries waiting for a
//! slot, filled to its window (`outboxd_core::window`) by claims and by the
//! fan-out (`outboxd_db::handoff`). A claim runs as a task of its own while
//! the loop goes on starting and finishing requests; each request runs the
//! stages of `attempt`; a breaker's transitions act through `breakers`. The
//! global request slots are shared fairly (`outboxd_core::share`), so
//! endpoints that hang hold their share and no more. A queued delivery
//! whose lease could run out before its request would is handed back
//! unsent. On shutdown (`shut_down`) the loop stops claiming,
//! lets requests finish within the grace period, and hands back the leases
//! of what it had to abandon or never started.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use outboxd_core::breaker::{BreakerPolicy, Transition};
use outboxd_core::lanes::{Lane, Rooms};
use outboxd_core::outcome::{is_blocked, Outcome};
use outboxd_core::retry::RetryPolicy;
use outboxd_core::Windows;
use outboxd_db::claim::Wants;
use outboxd_db::{claim, AttemptRecord, Claimed, Handed, Handoff, Pool, Room, WebhookCache};
use outboxd_metrics as names;
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::attempt::{self, Context};
use crate::breakers::{self, Opened};
use crate::in_flight::{InFlight, Lease};
use crate::writer::ResultWriter;
use crate::Clients;

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

impl Settings {
    /// The window rule for these limits.
    pub fn windows(&self) -> Windows {
        Windows::new(self.concurrency, self.webhook_concurrency)
    }
}

pub struct Deliverer {
    pub pool: Pool,
    pub cache: Arc<WebhookCache>,
    pub clients: Clients,
    pub settings: Settings,
    /// Notified when deliveries may be due (new fan-out, leases reaped).
    pub ready: Arc<Notify>,
    /// This loop's room per webhook, published for the fan-out.
    pub room: Arc<Room>,
    /// Deliveries the fan-out and the result writer's promotions claimed
    /// for this loop.
    pub handed: Option<mpsc::UnboundedReceiver<Handed>>,
    /// The writer's end of that hand-over (the same room and channel as
    /// the fan-out's); without it promotions go `pending`.
    pub promotions: Option<Handoff>,
}

type ClaimTask = JoinHandle<Result<Vec<Claimed>, outboxd_db::Error>>;

/// The loop's state, apart from the hand-over channel (which `run` keeps,
/// so its receive can be selected on beside the loop's own futures).
struct Loop {
    pool: Pool,
    cache: Arc<WebhookCache>,
    settings: Settings,
    ready: Arc<Notify>,
    room: Arc<Room>,
    ctx: Context,
    tasks: JoinSet<AttemptRecord>,
    in_flight: InFlight,
    results: mpsc::Sender<AttemptRecord>,
    /// The claim under way, beside the loop, which goes on starting and
    /// finishing requests meanwhile. One at a time, so claims never ask
    /// twice for the same room.
    claiming: Option<ClaimTask>,
    /// The limit of the claim under way.
    claim_limit: i64,
    /// The webhook the next claim's walk starts at.
    cursor: i64,
    /// The payload size claims have been bringing in, decayed: a claim
    /// asks for no more rows than the byte budget has room for at that
    /// size.
    payload_size: f64,
    /// Whether the queue may hold due rows we have not claimed.
    more: bool,
    /// When the loop looks for due rows anyway (a retry's time came, other
    /// replicas' fan-outs): a deadline kept across the loop's turns, so
    /// that a steady stream of fresh events, each waking the loop, cannot
    /// put it off for ever.
    next_poll: tokio::time::Instant,
    db_failures: u32,
    /// When the held deliveries were last counted within the webhooks'
    /// shares (`maybe_claim`).
    fair_counted: Instant,
}

/// How often at most a claim held back by the capacity counts the held
/// deliveries within the webhooks' shares.
const FAIR_COUNT: Duration = Duration::from_millis(100);

impl Deliverer {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut handed = self.handed.take();
        let (results, results_rx) = mpsc::channel(self.settings.concurrency.max(64) * 2);
        let writer = tokio::spawn(
            ResultWriter {
                pool: self.pool.clone(),
                results: results_rx,
                lease: self.settings.lease,
                ready: self.ready.clone(),
                handoff: self.promotions.take(),
            }
            .run(),
        );
        let mut state = Loop::new(self, results);
        let rate_granted = state.in_flight.rate.granted();
        state.deliver(&mut handed, &rate_granted, &shutdown).await;
        state.shut_down(handed, writer).await;
    }
}

impl Loop {
    fn new(d: Deliverer, results: mpsc::Sender<AttemptRecord>) -> Self {
        let ctx = Context {
            clients: d.clients,
            cache: d.cache.clone(),
            pool: d.pool.clone(),
            request_timeout: d.settings.request_timeout,
            retry: d.settings.retry,
        };
        Self {
            in_flight: InFlight::new(
                d.settings.windows(),
                d.settings.lease.saturating_sub(d.settings.request_timeout),
            ),
            pool: d.pool,
            cache: d.cache,
            settings: d.settings,
            ready: d.ready,
            room: d.room,
            ctx,
            tasks: JoinSet::new(),
            results,
            claiming: None,
            claim_limit: 0,
            cursor: 0,
            payload_size: 1024.0,
            more: true,
            next_poll: tokio::time::Instant::now(),
            db_failures: 0,
            fair_counted: Instant::now(),
        }
    }

    /// Until shutdown: claim when worth it, tell the fan-out the room, and
    /// react to whatever comes first.
    async fn deliver(
        &mut self,
        handed: &mut Option<mpsc::UnboundedReceiver<Handed>>,
        rate_granted: &Notify,
        shutdown: &CancellationToken,
    ) {
        loop {
            self.maybe_claim();
            self.publish_room();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(done).await;
                    while let Some(done) = self.tasks.try_join_next_with_id() {
                        self.finished(done).await;
                    }
                }
                joined = async { self.claiming.as_mut().expect("guarded").await }, if self.claiming.is_some() => {
                    self.claiming = None;
                    let found = self.claimed(joined);
                    // After a failure the next claim waits for the backoff.
                    self.more = self.db_failures == 0 && (self.more || found);
                    self.pump();
                }
                Some(h) = recv(handed) => {
                    self.accept(h);
                    while let Some(h) = handed.as_mut().and_then(|rx| rx.try_recv().ok()) {
                        self.accept(h);
                    }
                    self.pump();
                }
                _ = rate_granted.notified() => {
                    self.in_flight.unpark_all();
                    self.pump();
                }
                _ = self.ready.notified() => self.more = true,
                _ = tokio::time::sleep_until(self.next_poll) => {
                    let backoff = match self.db_failures {
                        0 => self.settings.poll_interval,
                        n => outboxd_core::retry::database_backoff(n),
                    };
                    self.next_poll = tokio::time::Instant::now() + backoff;
                    self.more = true;
                    self.in_flight.rate.tidy();
                }
            }
            metrics::gauge!(names::REQUESTS_IN_FLIGHT).set(self.in_flight.total() as f64);
        }
    }

    /// Shutdown: no more claims, nor deliveries from the fan-out (what they
    /// leased already is handed back), requests in flight finish within the
    /// grace period, and every lease left goes back without spending an
    /// attempt.
    async fn shut_down(
        mut self,
        handed: Option<mpsc::UnboundedReceiver<Handed>>,
        writer: JoinHandle<()>,
    ) {
        if let Some(task) = self.claiming.take() {
            self.claimed(task.await);
        }
        if let Some(mut rx) = handed {
            rx.close();
            while let Ok(h) = rx.try_recv() {
                self.accept(h);
            }
        }
        if !self.tasks.is_empty() {
            tracing::info!(requests = self.in_flight.total(), grace = ?self.settings.shutdown_grace,
                "shutting down: waiting for requests in flight");
        }
        let deadline = tokio::time::Instant::now() + self.settings.shutdown_grace;
        while !self.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, self.tasks.join_next_with_id()).await {
                Ok(Some(done)) => self.finished(done).await,
                Ok(None) => break,
                Err(_) => {
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        while self.tasks.join_next().await.is_some() {}
        let abandoned = self.in_flight.all_leases();
        drop(self.results);
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

    /// Starts a claim when none is under way, more may be due, and enough
    /// room is free to make it worth a round trip.
    fn maybe_claim(&mut self) {
        if self.claiming.is_some() || !self.more {
            return;
        }
        let windows = self.in_flight.windows;
        let batch = self.settings.batch_size as usize;
        let mut held = self.in_flight.held_total();
        let mut room = windows.capacity().saturating_sub(held);
        if !windows.worth_a_claim(room, held, batch) {
            // Webhooks holding more than their share of the capacity (the
            // leases of endpoints that hang) stop no claims for the others:
            // counted each up to its fair window. A walk over the webhooks
            // holding something, so at most every `FAIR_COUNT`.
            if self.fair_counted.elapsed() < FAIR_COUNT {
                return;
            }
            self.fair_counted = Instant::now();
            held = self.in_flight.held_within_shares(self.fair_counted);
            room = windows.capacity().saturating_sub(held);
            if !windows.worth_a_claim(room, held, batch) {
                return;
            }
        }
        let lease = self.settings.lease;
        let cache = &self.cache;
        let mut dropped = Vec::new();
        self.in_flight.gone.retain(|&id, at| {
            let keep = at.elapsed() < lease && cache.contains(id);
            if !keep {
                dropped.push(id);
            }
            keep
        });
        // A disabled webhook's breaker goes, so its last deliveries are
        // claimed and cancelled rather than held back forever.
        self.in_flight.breakers.retain(|id| {
            let keep = cache.contains(id);
            if !keep {
                dropped.push(id);
            }
            keep
        });
        for id in dropped {
            self.in_flight.touch(id);
        }
        let wants = self.wants();
        let by_bytes = (self.in_flight.byte_room() as f64 / self.payload_size).ceil() as i64;
        let limit = (room as i64)
            .min(self.settings.batch_size)
            .min(by_bytes.max(1));
        self.claim_limit = limit;
        let pool = self.pool.clone();
        self.claiming = Some(tokio::spawn(async move {
            claim::claim(&pool, &wants, limit, lease).await
        }));
        // A finished request, a fan-out or the poll interval asks again
        // once this claim is back.
        self.more = false;
    }

    /// Queues what a claim leased. Says whether more may be due: the claim
    /// found some.
    fn claimed(
        &mut self,
        joined: Result<Result<Vec<Claimed>, outboxd_db::Error>, JoinError>,
    ) -> bool {
        match joined {
            Ok(Ok(batch)) => {
                self.db_failures = 0;
                // An empty claim means nothing is due for the webhooks with
                // room.
                let found = !batch.is_empty();
                if batch.len() as i64 >= self.claim_limit {
                    // Cut short: the next claim goes on from the last
                    // webhook this one reached.
                    self.cursor = batch.iter().map(|d| d.webhook_id).max().unwrap_or(0);
                } else if self.cursor != 0 {
                    // The walk reached the last webhook: start over, and
                    // look at the webhooks before where this one began.
                    self.cursor = 0;
                    self.more = true;
                }
                if !batch.is_empty() {
                    let bytes: usize = batch.iter().map(|d| d.payload.len()).sum();
                    let mean = bytes as f64 / batch.len() as f64;
                    self.payload_size = (0.5 * self.payload_size + 0.5 * mean).max(64.0);
                }
                let claimed_at = Instant::now();
                let webhooks: HashSet<i64> = batch.iter().map(|d| d.webhook_id).collect();
                for delivery in batch {
                    self.in_flight.enqueue(delivery, claimed_at);
                }
                self.hand_back_paused(webhooks);
                found
            }
            Ok(Err(e)) => {
                self.db_failures += 1;
                self.next_poll = tokio::time::Instant::now()
                    + outboxd_core::retry::database_backoff(self.db_failures);
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

    /// What the claim may take: full rooms of every webhook except those
    /// listed, each with the rest of its lanes' fair windows (its share of
    /// the global slots, `InFlight::fair_window`) less what it holds
    /// and what the fan-out is handing over (fresh, all of it), or nothing
    /// in a lane where that is not worth a claim. Lists only the webhooks
    /// holding something, paused, gone or in transit.
    fn wants(&self) -> Wants {
        let now = Instant::now();
        let windows = self.in_flight.windows;
        let in_transit = self.room.in_transit();
        let listed: HashSet<i64> = self
            .in_flight
            .not_at_default()
            .chain(in_transit.keys().copied())
            .collect();
        let rooms = listed
            .into_iter()
            .map(|id| {
                let transit = in_transit.get(&id).copied().unwrap_or(0);
                let window = self.in_flight.fair_window(id, now);
                let (fresh, retries) = self.in_flight.held_by_lane(id);
                let rooms = if self.in_flight.over_budget() {
                    Rooms::default()
                } else {
                    windows.rooms_worth_claiming(window, fresh + transit, retries)
                };
                (id, rooms)
            })
            .collect();
        Wants {
            from_webhook: self.cursor,
            default: if self.in_flight.over_budget() {
                Rooms::default()
            } else {
                windows.full_rooms()
            },
            rooms,
            bytes: self.in_flight.byte_room() as i64,
        }
    }

    /// Queues what the fan-out claimed, and books the room it took.
    fn accept(&mut self, h: Handed) {
        let mut used: HashMap<i64, usize> = HashMap::new();
        for delivery in h.claimed {
            *used.entry(delivery.webhook_id).or_default() += 1;
            self.in_flight.enqueue(delivery, h.at);
        }
        for (webhook_id, taken) in h.taken {
            self.room.arrived(
                webhook_id,
                taken,
                used.get(&webhook_id).copied().unwrap_or(0),
            );
        }
        self.hand_back_paused(used.into_keys().collect());
    }

    /// Tells the fan-out the room of the webhooks whose room changed
    /// (every other has the default window), or that there is none while
    /// the queued payloads fill their budget.
    fn publish_room(&mut self) {
        if self.in_flight.over_budget() {
            self.room.publish_none();
            return;
        }
        let now = Instant::now();
        let touched = self.in_flight.take_touched();
        let in_flight = &self.in_flight;
        self.room
            .publish(touched.into_iter().map(|id| (id, in_flight.room(id, now))));
    }

    /// Starts queued deliveries while a global slot is free, each to the
    /// webhook the fair share picks (`outboxd_core::share`: fewest running
    /// first, none beyond its share while others wait). A delivery whose
    /// lease could expire before its request would time out is handed back
    /// unsent; a rate-limited webhook without tokens waits parked. Costs a
    /// few steps per request started, whatever the webhooks queued.
    fn pump(&mut self) {
        let mut hand_back = Vec::new();
        while let Some(webhook_id) = self.in_flight.next_to_start() {
            let rate_limited = self
                .cache
                .get(webhook_id)
                .is_some_and(|w| w.rate_limit.is_some());
            if rate_limited {
                let waiting = self.in_flight.queued_of(webhook_id);
                if !self
                    .in_flight
                    .rate
                    .try_take(&self.pool, webhook_id, waiting)
                {
                    self.in_flight.park(webhook_id);
                    continue;
                }
            }
            let Some(next) = self.in_flight.dequeue(webhook_id) else {
                continue;
            };
            let stale =
                next.claimed_at.elapsed() + self.settings.request_timeout >= self.settings.lease;
            if stale {
                self.in_flight.unsent(&next.delivery);
                hand_back.push((next.delivery.delivery_id, next.delivery.lease));
                continue;
            }
            self.start(next.delivery);
        }
        self.hand_back_unsent(hand_back);
    }

    /// Hands back, unsent, what arrived for webhooks whose breaker is open
    /// (claimed or fanned out before it opened).
    fn hand_back_paused(&mut self, webhooks: HashSet<i64>) {
        let now = Instant::now();
        let mut leases = Vec::new();
        for webhook_id in webhooks {
            if self.in_flight.paused(webhook_id, now) {
                leases.extend(
                    self.in_flight
                        .take_queue(webhook_id)
                        .iter()
                        .map(|d| (d.delivery_id, d.lease)),
                );
            }
        }
        self.hand_back_unsent(leases);
    }

    /// Gives queued leases back without spending an attempt, beside the
    /// loop.
    fn hand_back_unsent(&self, leases: Vec<(i64, i64)>) {
        if leases.is_empty() {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            match claim::hand_back(&pool, &leases).await {
                Ok(n) => {
                    tracing::debug!(deliveries = n, "queued deliveries handed back unsent")
                }
                Err(e) => tracing::debug!(error = %e,
                    "could not hand back queued deliveries; their leases will expire"),
            }
        });
    }

    fn start(&mut self, delivery: Claimed) {
        let lease = Lease {
            delivery_id: delivery.delivery_id,
            lease: delivery.lease,
            webhook_id: delivery.webhook_id,
            bytes: delivery.payload.len(),
            lane: Lane::of_attempt(delivery.attempt),
        };
        let handle = self.tasks.spawn(attempt::run(self.ctx.clone(), delivery));
        self.in_flight.started(handle.id(), lease);
    }

    /// Books a finished request, starts the next queued ones, passes the
    /// record on, and notes whether a claim is worth making: the window of
    /// the request's lane now has a share free (counted once, as it crosses
    /// that mark).
    async fn finished(&mut self, done: Result<(tokio::task::Id, AttemptRecord), JoinError>) {
        let (task_id, record) = match done {
            Ok((id, record)) => (id, Some(record)),
            Err(e) => (e.id(), None),
        };
        let lease = self.in_flight.finished(task_id);
        // A 410 unsubscribes: what waits in the webhook's queue is
        // cancelled unsent, as the disable cancels what waits in the table.
        let mut cancelled = Vec::new();
        if let Some(record) = &record {
            if record.gone {
                self.in_flight
                    .gone
                    .insert(record.webhook_id, Instant::now());
                let now = Utc::now();
                cancelled.extend(
                    self.in_flight
                        .take_queue(record.webhook_id)
                        .iter()
                        .map(|delivery| attempt::cancelled(delivery, now)),
                );
            } else if !record.cancelled && !record.error.as_deref().is_some_and(is_blocked) {
                self.in_flight.took(
                    record.webhook_id,
                    Duration::from_secs_f64(record.duration_ms.max(0.0) / 1000.0),
                );
                // A target refused by the SSRF guard was never contacted:
                // there is no failing receiver to protect, and a pause would
                // hold its deliveries back after the admin allows it.
                self.observe(record);
            }
        }
        if let Some(lease) = lease {
            // The slot goes to whoever the fair share picks, this webhook
            // or another.
            self.pump();
            let (fresh, retries) = self.in_flight.held_by_lane(lease.webhook_id);
            if self
                .in_flight
                .windows
                .lane_just_freed(lease.lane, fresh, retries)
            {
                self.more = true;
            }
        }
        // Backpressure: when the database is slow, sending waits for it.
        for record in record.into_iter().chain(cancelled) {
            let _ = self.results.send(record).await;
        }
    }

    /// Feeds an attempt's result to its webhook's circuit breaker and acts
    /// on what that changes.
    fn observe(&mut self, record: &AttemptRecord) {
        let now = Instant::now();
        let webhook_id = record.webhook_id;
        let success = record.outcome == Outcome::Delivered;
        let transition =
            self.in_flight
                .breakers
                .record(webhook_id, success, now, &self.settings.breaker);
        match transition {
            None => return,
            Some(_) => self.in_flight.touch(webhook_id),
        }
        match transition {
            None => {}
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
                let queued = self
                    .in_flight
                    .take_queue(webhook_id)
                    .iter()
                    .map(|d| (d.delivery_id, d.lease))
                    .collect();
                Opened {
                    webhook_id,
                    pause,
                    reason,
                    disable_after: self.settings.disable_failing_after,
                    queued,
                }
                .spawn(self.pool.clone(), self.ready.clone());
            }
            Some(Transition::Closed) => {
                // Its window is whole again: claim for it now.
                self.more = true;
                breakers::closed(self.pool.clone(), webhook_id, self.ready.clone());
            }
        }
        metrics::gauge!(names::WEBHOOKS_PAUSED).set(self.in_flight.breakers.not_closed(now) as f64);
    }
}

/// The next hand-over from the fan-out; never, without one.
async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Handed>>) -> Option<Handed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
