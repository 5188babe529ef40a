//! Dead endpoints: 100 healthy webhooks alone, against the same beside 100
//! whose port refuses connections (`dead`) or that never answer (`hang`),
//! each webhook with events of its own, taking turns.

use std::time::Duration;

use anyhow::{Context, Result};

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

/// The same with endpoints that accept the connection and never answer
/// (`hang`): each such request holds a slot until the daemon's request
/// timeout (`--env OUTBOXD_REQUEST_TIMEOUT=...`), so the rounds wait it out
/// before the next one starts.
pub async fn hanging(b: &mut Bench<'_>) -> Result<Vec<Row>> {
    let url = b.url();
    let hang = b.receiver.hanging_url();
    let timeout = request_timeout(&b.args.daemon_env)?;
    let mut alone = Vec::new();
    let mut beside = Vec::new();
    for round in 0..b.args.rounds {
        set_own_webhooks(&b.db, &url, 100, 0, &url).await?;
        let (rate, _) =
            drain_spread(&b.db, &b.tally, &mut b.daemon, b.args.events / 2, 100, 100).await?;
        alone.push(rate);
        set_own_webhooks(&b.db, &url, 100, 100, &hang).await?;
        let (rate_beside, _) =
            drain_spread(&b.db, &b.tally, &mut b.daemon, b.args.events, 200, 100).await?;
        beside.push(rate_beside);
        println!(
            "hang round {}: alone {rate:.0}/s, beside hanging {rate_beside:.0}/s ({:.0}%)",
            round + 1,
            100.0 * rate_beside / rate
        );
        cancel_open(&b.db).await?;
        // The hanging requests still running end at their timeout.
        set_own_webhooks(&b.db, &url, 0, 0, &url).await?;
        tokio::time::sleep(timeout + Duration::from_secs(1)).await;
    }
    let (alone, beside) = (median(&alone), median(&beside));
    Ok(vec![
        Row::new(
            "100 healthy webhooks (hang run)",
            format!("{alone:.0} deliveries/s"),
            format!(
                "{} events; median of {} runs",
                b.args.events / 2,
                b.args.rounds
            ),
        ),
        Row::new(
            "100 healthy beside 100 that never answer",
            format!(
                "{beside:.0} deliveries/s ({:.0}% of alone)",
                100.0 * beside / alone
            ),
            format!(
                "{} events, half to the hanging ones; request timeout {}; healthy deliveries counted; taking turns",
                b.args.events,
                humantime::format_duration(timeout)
            ),
        ),
    ])
}

/// The daemon's request timeout: the last `OUTBOXD_REQUEST_TIMEOUT` of
/// `--env`, else its default.
fn request_timeout(env: &[String]) -> Result<Duration> {
    match env
        .iter()
        .filter_map(|kv| kv.strip_prefix("OUTBOXD_REQUEST_TIMEOUT="))
        .next_back()
    {
        Some(v) => humantime::parse_duration(v)
            .with_context(|| format!("--env OUTBOXD_REQUEST_TIMEOUT={v}: not a duration")),
        None => Ok(DEFAULT_REQUEST_TIMEOUT),
    }
}

/// `OUTBOXD_REQUEST_TIMEOUT`'s default (docs/configuration.md).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_timeout_is_the_last_one_given_or_the_default() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(request_timeout(&env(&[])).unwrap(), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout(&env(&[
                "OUTBOXD_REQUEST_TIMEOUT=5s",
                "OUTBOXD_CONCURRENCY=9",
                "OUTBOXD_REQUEST_TIMEOUT=2s"
            ]))
            .unwrap(),
            Duration::from_secs(2)
        );
        assert!(request_timeout(&env(&["OUTBOXD_REQUEST_TIMEOUT=soon"])).is_err());
    }
}
