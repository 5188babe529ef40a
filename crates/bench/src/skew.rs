//! `skew`: 1,000 webhooks of which 10 get half the events, at a steady
//! offered rate: each webhook's p99 from commit to receipt, the median
//! webhook's against the worst.
//!
//! A hot webhook's queue must not hold back the cold ones: with a shared
//! queue or claim order the cold webhooks' latency would follow the hot
//! ones' backlog.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};

use crate::bench::Bench;
use crate::fixture::{set_own_webhooks, wait_drained};
use crate::table::{median, percentile, summary, Row};

/// Webhooks, and how many of them get half the events.
const WEBHOOKS: i64 = 1_000;
const HOT: i64 = 10;

/// The webhook (1-based, `t<i>.*`) of the `k`th event: even ones go to the
/// hot webhooks in turn, odd ones to the cold ones in turn.
pub fn skewed_webhook(k: i64, webhooks: i64, hot: i64) -> i64 {
    if k % 2 == 0 {
        (k / 2) % hot + 1
    } else {
        hot + (k / 2) % (webhooks - hot) + 1
    }
}

/// Per webhook, the p99 of its latencies; sorted ascending.
pub fn p99_per_webhook(latencies: &HashMap<i64, Vec<f64>>) -> Vec<f64> {
    let mut p99s: Vec<f64> = latencies
        .values()
        .map(|v| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            percentile(&v, 0.99)
        })
        .collect();
    p99s.sort_by(f64::total_cmp);
    p99s
}

pub async fn run(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let url = b.url();
    let rate = b.args.skew_rate;
    let seconds = b.args.skew_seconds;
    set_own_webhooks(&b.db, &url, WEBHOOKS, 0, &url).await?;
    *b.tally.arrivals.lock().unwrap() = Some(HashMap::new());

    // A batch every 10 ms, one statement (so one transaction) each.
    let per_tick = (rate / 100).max(1) as i64;
    let insert =
        b.db.prepare(
            "INSERT INTO outbox.events (event_type, payload)
             SELECT t, '{\"amount\": 4200}' FROM unnest($1::text[]) AS t
             RETURNING id, event_type",
        )
        .await?;
    let mut committed: HashMap<i64, (SystemTime, i64)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut k = 0i64;
    while Instant::now() < stop {
        tick.tick().await;
        let types: Vec<String> = (k..k + per_tick)
            .map(|k| format!("t{}.created", skewed_webhook(k, WEBHOOKS, HOT)))
            .collect();
        k += per_tick;
        let rows = b.db.query(&insert, &[&types]).await?;
        let at = SystemTime::now();
        for r in rows {
            let ty: String = r.get(1);
            let webhook = ty[1..ty.find('.').unwrap_or(ty.len())].parse().unwrap_or(0);
            committed.insert(r.get(0), (at, webhook));
        }
    }
    let offered = k as f64 / seconds as f64;
    wait_drained(&b.db).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrivals = b.tally.arrivals.lock().unwrap().take().unwrap_or_default();

    let mut by_webhook: HashMap<i64, Vec<f64>> = HashMap::new();
    let mut all = Vec::new();
    for (id, (at, webhook)) in &committed {
        let Some(got) = arrivals.get(id) else {
            continue;
        };
        let ms = got.duration_since(*at).unwrap_or_default().as_secs_f64() * 1000.0;
        by_webhook.entry(*webhook).or_default().push(ms);
        all.push(ms);
    }
    if all.len() < committed.len() {
        bail!(
            "only {} of {} skewed events arrived",
            all.len(),
            committed.len()
        );
    }
    let hot: Vec<f64> = (1..=HOT)
        .filter_map(|w| by_webhook.get(&w))
        .flatten()
        .copied()
        .collect();
    let p99s = p99_per_webhook(&by_webhook);
    let (med, worst) = (median(&p99s), p99s.last().copied().unwrap_or(f64::NAN));
    let (p50, p99, max) = summary(&mut all);
    let cold_samples = (committed.len() as f64 / 2.0) / (WEBHOOKS - HOT) as f64;
    Ok(vec![
        Row::new(
            "skew: all events, commit to receipt",
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
            format!(
                "{} events at {offered:.0}/s for {seconds} s; {WEBHOOKS} webhooks, {HOT} get half; hot webhooks' p99 {:.2} ms",
                committed.len(),
                summary(&mut hot.clone()).1
            ),
        ),
        Row::new(
            "skew: per-webhook p99, median webhook / worst webhook",
            format!(
                "{med:.2} ms / {worst:.2} ms (worst {:.1}x the median)",
                worst / med
            ),
            format!(
                "{} webhooks; about {cold_samples:.0} events per cold webhook, so its p99 is near its max",
                p99s.len()
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_events_go_to_the_hot_webhooks() {
        let mut counts: HashMap<i64, i64> = HashMap::new();
        for k in 0..20_000 {
            *counts.entry(skewed_webhook(k, 1000, 10)).or_default() += 1;
        }
        assert_eq!(counts.len(), 1000);
        let hot: i64 = (1..=10).map(|w| counts[&w]).sum();
        assert_eq!(hot, 10_000);
        assert!(counts.keys().all(|&w| (1..=1000).contains(&w)));
        assert_eq!(counts[&1], 1000);
        assert!((10..=11).contains(&counts[&11]));
    }

    #[test]
    fn p99_per_webhook_is_each_webhooks_own() {
        let mut l = HashMap::new();
        l.insert(1, (1..=100).map(f64::from).collect::<Vec<_>>());
        l.insert(2, vec![7.0, 3.0]);
        assert_eq!(p99_per_webhook(&l), vec![7.0, 100.0]);
    }
}
