//! Many webhooks: 10,000 webhooks against one, the events spread evenly,
//! taking turns (`many`); 100,000 enabled of which 1,000 get events
//! (`sparse`).

use std::collections::HashMap;

use anyhow::Result;

use crate::bench::Bench;
use crate::fixture::{drain_spread, set_own_webhooks};
use crate::table::{median, Row};

pub async fn many(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    // 10,000 webhooks, each subscribed to its own t<i>.*, the events
    // spread evenly, against one webhook, taking turns.
    let url = b.url();
    let mut rates: HashMap<i64, Vec<f64>> = HashMap::new();
    for _ in 0..b.args.rounds {
        for n in [1, 10_000] {
            set_own_webhooks(&b.db, &url, n, 0, &url).await?;
            let (rate, _) =
                drain_spread(&b.db, &b.tally, &mut b.daemon, b.args.events, n, n).await?;
            rates.entry(n).or_default().push(rate);
        }
    }
    let (one, many) = (median(&rates[&1]), median(&rates[&10_000]));
    Ok(vec![
        Row::new(
            "many webhooks: 1",
            format!("{one:.0} deliveries/s"),
            format!("{} events; median of {} runs", b.args.events, b.args.rounds),
        ),
        Row::new(
            "many webhooks: 10,000, events spread evenly",
            format!("{many:.0} deliveries/s ({:.0}% of 1)", 100.0 * many / one),
            format!(
                "{} events; median of {} runs, taking turns with 1",
                b.args.events, b.args.rounds
            ),
        ),
    ])
}

pub async fn sparse(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    // 100,000 webhooks enabled, the events going to 1,000 of them, against
    // one webhook, taking turns.
    let url = b.url();
    let mut rates: HashMap<i64, Vec<f64>> = HashMap::new();
    for _ in 0..b.args.rounds {
        for (n, active) in [(1, 1), (100_000, 1_000)] {
            set_own_webhooks(&b.db, &url, n, 0, &url).await?;
            let (rate, _) = drain_spread(
                &b.db,
                &b.tally,
                &mut b.daemon,
                b.args.events,
                active,
                active,
            )
            .await?;
            rates.entry(n).or_default().push(rate);
        }
    }
    let (one, sparse) = (median(&rates[&1]), median(&rates[&100_000]));
    Ok(vec![Row::new(
        "100,000 webhooks enabled, 1,000 receive events",
        format!(
            "{sparse:.0} deliveries/s ({:.0}% of 1 webhook's {one:.0}/s)",
            100.0 * sparse / one
        ),
        format!(
            "{} events; median of {} runs, taking turns with 1",
            b.args.events, b.args.rounds
        ),
    )])
}
