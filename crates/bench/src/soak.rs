//! `soak`: a steady offered rate for a long while with a short retention.
//! Every few seconds: how old the oldest event not yet received is, the
//! size of the tables that grow with history (partitions summed), their
//! dead rows and autovacuums, and the daemon's memory; then a verdict.
//!
//! The lag is measured at the receiver (the oldest published event whose
//! id has not arrived), so the sampling adds no query over the growing
//! tables beyond the catalog's sizes and statistics.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::bench::{connect, Bench};
use crate::fixture::set_own_webhooks;
use crate::receiver::{Seen, Tally};
use crate::table::Row;

/// Webhooks the events are spread over, one delivery per event.
const WEBHOOKS: i64 = 10;

/// Ids `first..=last` committed together at `at`.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub first: i64,
    pub last: i64,
    pub at: Instant,
}

/// The oldest published batch with an id not received yet.
#[derive(Default)]
pub struct Watermark {
    batches: VecDeque<Batch>,
    /// The lowest id of the front batch not known to have arrived.
    cursor: i64,
}

impl Watermark {
    pub fn push(&mut self, batch: Batch) {
        if self.batches.is_empty() {
            self.cursor = batch.first;
        }
        self.batches.push_back(batch);
    }

    /// Moves past what arrived; the commit time of the oldest id that did
    /// not, if any.
    pub fn oldest_missing(&mut self, seen: &Seen) -> Option<Instant> {
        while let Some(front) = self.batches.front() {
            while self.cursor <= front.last && seen.contains(self.cursor) {
                self.cursor += 1;
            }
            if self.cursor <= front.last {
                return Some(front.at);
            }
            self.batches.pop_front();
            if let Some(next) = self.batches.front() {
                self.cursor = next.first;
            }
        }
        None
    }

    /// Ids published and not received.
    pub fn missing(&self, seen: &Seen) -> u64 {
        self.batches
            .iter()
            .map(|b| seen.missing_in(b.first.max(self.cursor)..=b.last))
            .sum()
    }
}

/// One sample of the series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub secs: f64,
    pub published: u64,
    pub received: u64,
    pub lag: f64,
    /// Table and index bytes of events, deliveries and delivery_attempts.
    pub sizes: [(i64, i64); 3],
    pub dead_tuples: i64,
    pub autovacuums: i64,
    pub vacuums_running: i64,
    pub rss_kb: u64,
}

impl Sample {
    pub fn total_bytes(&self) -> i64 {
        self.sizes.iter().map(|(t, i)| t + i).sum()
    }
}

/// What the series says.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub max_lag: f64,
    /// The largest total size in the second half of the samples after the
    /// first retention period, over the largest in the first half; `None`
    /// when the run is too short to say.
    pub growth: Option<f64>,
    pub lost: u64,
}

/// The lag bound and how much the sizes may still grow after the first
/// retention period (partitions are retired a width at a time, so the
/// sizes saw-tooth rather than stay level).
pub const MAX_LAG_SECS: f64 = 1.0;
pub const MAX_GROWTH: f64 = 1.2;

impl Verdict {
    pub fn of(samples: &[Sample], retention: Duration, lost: u64) -> Verdict {
        let max_lag = samples.iter().map(|s| s.lag).fold(0.0, f64::max);
        let after: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.secs >= retention.as_secs_f64())
            .collect();
        let growth = (after.len() >= 4).then(|| {
            let (first, second) = after.split_at(after.len() / 2);
            let max = |v: &[&Sample]| v.iter().map(|s| s.total_bytes()).max().unwrap_or(0);
            max(second) as f64 / max(first).max(1) as f64
        });
        Verdict {
            max_lag,
            growth,
            lost,
        }
    }

    pub fn passed(&self) -> bool {
        self.max_lag < MAX_LAG_SECS
            && self.growth.is_some_and(|g| g <= MAX_GROWTH)
            && self.lost == 0
    }
}

const SIZES: &str = "
SELECT t.name,
       COALESCE(sum(pg_table_size(p.relid)), 0)::int8,
       COALESCE(sum(pg_indexes_size(p.relid)), 0)::int8,
       COALESCE(sum(s.n_dead_tup), 0)::int8,
       COALESCE(sum(s.autovacuum_count), 0)::int8
  FROM unnest(ARRAY['events', 'deliveries', 'delivery_attempts']) WITH ORDINALITY AS t(name, n)
 CROSS JOIN LATERAL (SELECT relid FROM pg_partition_tree(('outbox.' || t.name)::regclass)
                     UNION SELECT ('outbox.' || t.name)::regclass) AS p
  LEFT JOIN pg_stat_user_tables s ON s.relid = p.relid
 GROUP BY t.name, t.n
 ORDER BY t.n";

const VACUUMS_RUNNING: &str =
    "SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = current_database()";

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let (rate, duration, retention) = (b.args.soak_rate, b.args.soak, b.args.soak_retention);
    let every = b.args.soak_sample;
    b.start_over(&[format!(
        "OUTBOXD_RETENTION={}",
        humantime::format_duration(retention)
    )])
    .await?;
    let url = b.url();
    set_own_webhooks(&b.db, &url, WEBHOOKS, 0, &url).await?;
    let first: i64 =
        b.db.query_one("SELECT COALESCE(max(id), 0) + 1 FROM outbox.events", &[])
            .await?
            .get(0);
    *b.tally.seen.lock().unwrap() = Some(Seen::from(first));
    let received0 = b.tally.count.load(Ordering::Relaxed);

    println!(
        "soak: {rate} events/s for {}, retention {}, a sample every {}",
        humantime::format_duration(duration),
        humantime::format_duration(retention),
        humantime::format_duration(every)
    );
    println!();
    println!("| s | published | received | lag s | events MB (idx) | deliveries MB (idx) | attempts MB (idx) | dead rows | autovacuums | vacuuming | RSS MB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");

    let (tx, mut batches) = mpsc::unbounded_channel();
    let publisher_db = connect(&b.db_url).await?;
    let publisher = tokio::spawn(publish(publisher_db, rate, duration, tx));
    let start = Instant::now();
    let mut watermark = Watermark::default();
    let mut samples = Vec::new();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while start.elapsed() < duration {
        tick.tick().await;
        while let Ok(batch) = batches.try_recv() {
            published += (batch.last - batch.first + 1) as u64;
            watermark.push(batch);
        }
        let s = sample(b, &mut watermark, start, published, received0).await?;
        print_sample(&s);
        samples.push(s);
        b.daemon.check_alive("the soak")?;
    }
    publisher.await??;
    while let Ok(batch) = batches.try_recv() {
        published += (batch.last - batch.first + 1) as u64;
        watermark.push(batch);
    }
    // The backlog gets to arrive while it keeps arriving: lost is what
    // has not come after 10 s without any progress.
    let mut last_progress = (b.tally.count.load(Ordering::Relaxed), Instant::now());
    loop {
        let pending = {
            let seen = b.tally.seen.lock().unwrap();
            watermark.oldest_missing(seen.as_ref().expect("set above"))
        };
        let count = b.tally.count.load(Ordering::Relaxed);
        if count != last_progress.0 {
            last_progress = (count, Instant::now());
        }
        if pending.is_none() || last_progress.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        b.daemon.check_alive("the soak's drain")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = {
        let seen = b.tally.seen.lock().unwrap();
        watermark.missing(seen.as_ref().expect("set above"))
    };
    *b.tally.seen.lock().unwrap() = None;
    let received = b.tally.count.load(Ordering::Relaxed) - received0;
    let verdict = Verdict::of(&samples, retention, lost);
    let last = samples.last().copied().unwrap_or_default();
    let peak_rss = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    b.start_over(&[]).await?;

    let secs = duration.as_secs_f64();
    Ok(vec![
        Row::new(
            "soak: offered rate",
            format!("{:.0} events/s", published as f64 / secs),
            format!(
                "asked {rate}/s for {}, {published} events to {WEBHOOKS} webhooks; {received} requests received ({} more than events)",
                humantime::format_duration(duration),
                received.saturating_sub(published)
            ),
        ),
        Row::new(
            "soak: oldest event not yet received",
            format!("max {:.2} s", verdict.max_lag),
            format!("sampled every {}; bound {MAX_LAG_SECS} s", humantime::format_duration(every)),
        ),
        Row::new(
            "soak: table + index size after the first retention period",
            match verdict.growth {
                Some(g) => format!("{:.2}x from its first half to its second", g),
                None => "run too short to say".into(),
            },
            format!(
                "retention {}; at the end {:.0} MB (events {:.0}, deliveries {:.0}, attempts {:.0}); bound {MAX_GROWTH}x",
                humantime::format_duration(retention),
                mb(last.total_bytes()),
                mb(last.sizes[0].0 + last.sizes[0].1),
                mb(last.sizes[1].0 + last.sizes[1].1),
                mb(last.sizes[2].0 + last.sizes[2].1),
            ),
        ),
        Row::new(
            "soak: lost",
            format!("{lost} events"),
            "published and never received",
        ),
        Row::new(
            "soak: daemon RSS",
            format!("peak {:.1} MB, at the end {:.1} MB", peak_rss as f64 / 1024.0, last.rss_kb as f64 / 1024.0),
            "VmRSS at each sample",
        ),
        Row::new(
            "soak: verdict",
            if verdict.passed() { "passed" } else { "FAILED" },
            "lag below its bound throughout, sizes flat after the first retention period, nothing lost",
        ),
    ])
}

/// Publishes `rate` events a second (a statement every 10 ms) for
/// `duration`, telling the sampler each batch's ids and commit time.
async fn publish(
    db: Client,
    rate: u64,
    duration: Duration,
    batches: mpsc::UnboundedSender<Batch>,
) -> Result<()> {
    let per_tick = (rate / 100).max(1) as i64;
    let stmt = db
        .prepare(
            "WITH e AS (
                 INSERT INTO outbox.events (event_type, payload)
                 SELECT 't' || (i % $2::int8 + 1) || '.created', jsonb_build_object('n', i, 'amount', 4200)
                   FROM generate_series(1, $1::int8) AS i
                 RETURNING id)
             SELECT min(id), max(id), count(*) FROM e",
        )
        .await?;
    let stop = Instant::now() + duration;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < stop {
        tick.tick().await;
        let row = db.query_one(&stmt, &[&per_tick, &WEBHOOKS]).await?;
        let at = Instant::now();
        let (first, last, n): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        anyhow::ensure!(
            last - first + 1 == n,
            "the event ids of one insert were not contiguous ({first}..={last} for {n})"
        );
        let _ = batches.send(Batch { first, last, at });
    }
    Ok(())
}

async fn sample(
    b: &Bench<'_>,
    watermark: &mut Watermark,
    start: Instant,
    published: u64,
    received0: u64,
) -> Result<Sample> {
    let oldest = {
        let seen = b.tally.seen.lock().unwrap();
        watermark.oldest_missing(seen.as_ref().expect("set by the soak"))
    };
    let now = Instant::now();
    let mut s = Sample {
        secs: start.elapsed().as_secs_f64(),
        published,
        received: received(&b.tally, received0),
        lag: oldest.map_or(0.0, |at| now.duration_since(at).as_secs_f64()),
        rss_kb: b.daemon.rss_kb()?,
        ..Sample::default()
    };
    for (i, row) in b.db.query(SIZES, &[]).await?.iter().enumerate().take(3) {
        s.sizes[i] = (row.get(1), row.get(2));
        s.dead_tuples += row.get::<_, i64>(3);
        s.autovacuums += row.get::<_, i64>(4);
    }
    s.vacuums_running = b.db.query_one(VACUUMS_RUNNING, &[]).await?.get(0);
    Ok(s)
}

fn received(tally: &Arc<Tally>, from: u64) -> u64 {
    tally.count.load(Ordering::Relaxed) - from
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_sample(s: &Sample) {
    let size = |(t, i): (i64, i64)| format!("{:.0} ({:.0})", mb(t + i), mb(i));
    println!(
        "| {:.0} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {:.1} |",
        s.secs,
        s.published,
        s.received,
        s.lag,
        size(s.sizes[0]),
        size(s.sizes[1]),
        size(s.sizes[2]),
        s.dead_tuples,
        s.autovacuums,
        s.vacuums_running,
        s.rss_kb as f64 / 1024.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i64, last: i64, at: Instant) -> Batch {
        Batch { first, last, at }
    }

    #[test]
    fn the_watermark_is_the_oldest_batch_with_an_id_missing() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut w = Watermark::default();
        w.push(batch(10, 12, t0));
        w.push(batch(13, 15, t1));
        let mut seen = Seen::from(10);
        assert_eq!(w.oldest_missing(&seen), Some(t0));
        for id in [10, 11, 12, 14] {
            seen.insert(id);
        }
        assert_eq!(w.oldest_missing(&seen), Some(t1));
        assert_eq!(w.missing(&seen), 2);
        seen.insert(13);
        seen.insert(15);
        assert_eq!(w.oldest_missing(&seen), None);
        assert_eq!(w.missing(&seen), 0);
    }

    fn at(secs: f64, total: i64, lag: f64) -> Sample {
        Sample {
            secs,
            lag,
            sizes: [(total, 0), (0, 0), (0, 0)],
            ..Sample::default()
        }
    }

    #[test]
    fn sizes_that_level_off_after_the_retention_pass() {
        let r = Duration::from_secs(60);
        let flat: Vec<Sample> = (0..24)
            .map(|i| at(i as f64 * 10.0, (i.min(7) * 100) + (i % 3) * 10, 0.1))
            .collect();
        let v = Verdict::of(&flat, r, 0);
        assert!(v.growth.unwrap() <= MAX_GROWTH, "{v:?}");
        assert!(v.passed());

        let growing: Vec<Sample> = (0..24).map(|i| at(i as f64 * 10.0, i * 100, 0.1)).collect();
        let v = Verdict::of(&growing, r, 0);
        assert!(v.growth.unwrap() > MAX_GROWTH);
        assert!(!v.passed());
    }

    #[test]
    fn lag_loss_and_short_runs_fail_the_verdict() {
        let r = Duration::from_secs(60);
        let ok: Vec<Sample> = (0..24).map(|i| at(i as f64 * 10.0, 100, 0.2)).collect();
        assert!(Verdict::of(&ok, r, 0).passed());
        assert!(!Verdict::of(&ok, r, 1).passed());
        let mut late = ok.clone();
        late[5].lag = 1.5;
        assert_eq!(Verdict::of(&late, r, 0).max_lag, 1.5);
        assert!(!Verdict::of(&late, r, 0).passed());
        let short = &ok[..8];
        assert_eq!(Verdict::of(short, r, 0).growth, None);
        assert!(!Verdict::of(short, r, 0).passed());
    }
}
