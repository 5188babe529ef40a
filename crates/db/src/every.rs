//! The one shape of the maintenance services (sampler, reaper, partition
//! keeper): a round at start, then one every interval (a late round delays
//! the next rather than bunching them), until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `round` at start and then every `interval` until `shutdown`.
pub async fn every<F, Fut>(interval: Duration, shutdown: &CancellationToken, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        round().await;
    }
}
