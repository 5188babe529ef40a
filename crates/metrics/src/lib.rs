//! Metrics and probes: the metric names outboxd exports, the Prometheus
//! recorder, and the one listener serving `/metrics`, `/healthz`, `/readyz`.
//!
//! Names and their help texts are declared here once; docs/metrics.md lists
//! the same names. Stages record through the `metrics` facade; this crate
//! owns only the exporter side.

mod names;
mod server;

pub use names::*;
pub use server::{serve, ReadinessCheck, ServerError};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds for HTTP timings, 1 ms to 30 s: webhook receivers answer
/// in milliseconds on a LAN and in seconds when they are in trouble.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Delivery latency includes time spent waiting for retries, so its buckets
/// reach further: up to a day.
pub const DELIVERY_LATENCY_BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// How often the recorder folds recorded samples into its histograms.
/// Until it does, each sample is kept: a daemon nobody scrapes would
/// otherwise grow by a few samples per delivery for as long as it runs.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global recorder and its upkeep thread. Call once, before
/// any stage starts.
pub fn install() -> Result<PrometheusHandle, ServerError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(ATTEMPT_DURATION.into()), &LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(DELIVERY_LATENCY.into()),
                &DELIVERY_LATENCY_BUCKETS,
            )
        })
        .map_err(|e| ServerError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServerError::Metrics(e.to_string()))?;
    // `install_recorder` leaves the upkeep to the caller (a scrape runs it
    // too, but a scrape may never come).
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| ServerError::Metrics(format!("starting the metrics upkeep thread: {e}")))?;
    describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}
