//! Dead endpoints: 100 healthy webhooks alone, against the same beside 100
//! whose port refuses connections, each webhook with events of its own,
//! taking turns (`dead`).

use anyhow::Result;

use crate::bench::Bench;
use crate::fixture::{cancel_open, drain_spread, refused_url, set_own_webhooks};
use crate::table::{median, Row};

pub async fn refused(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let url = b.url();
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    for _ in 0..b.args.rounds {
        set_own_webhooks(&b.db, &url, 100, 0, &url).await?;
        alone.push(
            drain_spread(&b.db, &b.tally, &mut b.daemon, b.args.events / 2, 100, 100)
                .await?
                .0,
        );
        set_own_webhooks(&b.db, &url, 100, 100, &refused_url()?).await?;
        // Half the events go to the dead ones: only the healthy half
        // is counted, as it arrives.
        beside.push(
            drain_spread(&b.db, &b.tally, &mut b.daemon, b.args.events, 200, 100)
                .await?
                .0,
        );
        cancel_open(&b.db).await?;
    }
    let (alone, beside) = (median(&alone), median(&beside));
    Ok(vec![
        Row::new(
            "100 healthy webhooks",
            format!("{alone:.0} deliveries/s"),
            format!(
                "{} events; median of {} runs",
                b.args.events / 2,
                b.args.rounds
            ),
        ),
        Row::new(
            "100 healthy beside 100 refusing connections",
            format!(
                "{beside:.0} deliveries/s ({:.0}% of alone)",
                100.0 * beside / alone
            ),
            format!(
                "{} events, half to the dead ones; healthy deliveries counted; taking turns",
                b.args.events
            ),
        ),
    ])
}
