//! Every metric outboxd exports, with its help text. Labels stay bounded:
//! an outcome or a table name, never an event id or a URL.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const EVENTS_DISPATCHED: &str = "outboxd_events_dispatched_total";
pub const DELIVERIES: &str = "outboxd_deliveries_total";
pub const ATTEMPT_DURATION: &str = "outboxd_attempt_duration_seconds";
pub const DELIVERY_LATENCY: &str = "outboxd_delivery_latency_seconds";
pub const EVENTS_PENDING: &str = "outboxd_events_pending";
pub const DELIVERIES_PENDING: &str = "outboxd_deliveries_pending";
pub const OLDEST_PENDING_EVENT_AGE: &str = "outboxd_oldest_pending_event_age_seconds";
pub const OLDEST_PENDING_DELIVERY_AGE: &str = "outboxd_oldest_pending_delivery_age_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "outboxd_requests_in_flight";
pub const WEBHOOKS_DISABLED: &str = "outboxd_webhooks_disabled";
pub const WEBHOOKS_DISABLED_TOTAL: &str = "outboxd_webhooks_disabled_total";
pub const WEBHOOK_PAUSES: &str = "outboxd_webhook_pauses_total";
pub const WEBHOOKS_PAUSED: &str = "outboxd_webhooks_paused";
pub const DATABASE_UP: &str = "outboxd_database_up";
pub const DATABASE_ERRORS: &str = "outboxd_database_errors_total";
pub const RESULTS_FENCED: &str = "outboxd_results_fenced_total";
pub const RETENTION_DELETED: &str = "outboxd_retention_deleted_rows_total";
pub const BUILD_INFO: &str = "outboxd_build_info";

/// Every name above, for checks that a list of them is complete.
pub const ALL: [&str; 18] = [
    EVENTS_DISPATCHED,
    DELIVERIES,
    ATTEMPT_DURATION,
    DELIVERY_LATENCY,
    EVENTS_PENDING,
    DELIVERIES_PENDING,
    OLDEST_PENDING_EVENT_AGE,
    OLDEST_PENDING_DELIVERY_AGE,
    REQUESTS_IN_FLIGHT,
    WEBHOOKS_DISABLED,
    WEBHOOKS_DISABLED_TOTAL,
    WEBHOOK_PAUSES,
    WEBHOOKS_PAUSED,
    DATABASE_UP,
    DATABASE_ERRORS,
    RESULTS_FENCED,
    RETENTION_DELETED,
    BUILD_INFO,
];

pub(crate) fn describe() {
    describe_counter!(EVENTS_DISPATCHED, "Events fanned out into deliveries.");
    describe_counter!(
        DELIVERIES,
        "Delivery attempts recorded, by outcome (delivered, retry, failed)."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of one HTTP attempt, request to end of response."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Time from an event's creation to its successful delivery."
    );
    describe_gauge!(
        EVENTS_PENDING,
        "Events not yet fanned out (sampled from the database)."
    );
    describe_gauge!(
        DELIVERIES_PENDING,
        "Deliveries waiting for an attempt, including scheduled retries (sampled)."
    );
    describe_gauge!(
        OLDEST_PENDING_EVENT_AGE,
        Unit::Seconds,
        "Age of the oldest event not yet fanned out (sampled)."
    );
    describe_gauge!(
        OLDEST_PENDING_DELIVERY_AGE,
        Unit::Seconds,
        "Age of the oldest delivery not yet delivered, failed or cancelled (sampled)."
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "HTTP requests in flight in this process."
    );
    describe_gauge!(WEBHOOKS_DISABLED, "Webhooks currently disabled (sampled).");
    describe_counter!(
        WEBHOOKS_DISABLED_TOTAL,
        "Webhooks this process disabled: the endpoint answered 410 Gone, or kept failing too long."
    );
    describe_counter!(
        WEBHOOK_PAUSES,
        "Times this process's circuit breaker paused a webhook after failures in a row."
    );
    describe_gauge!(
        WEBHOOKS_PAUSED,
        "Webhooks whose circuit breaker is open or probing in this process."
    );
    describe_gauge!(
        DATABASE_UP,
        "1 when the last database check succeeded, else 0."
    );
    describe_counter!(DATABASE_ERRORS, "Database operations that failed.");
    describe_counter!(
        RESULTS_FENCED,
        "Attempt results ignored because their lease had expired."
    );
    describe_counter!(
        RETENTION_DELETED,
        "Rows deleted by the retention job, by table."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label says which build.");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metric named in the first cell of each row of the tables of
    /// docs/metrics.md: `outboxd_name` or `outboxd_name{labels}`.
    fn documented(doc: &str) -> Vec<String> {
        doc.lines()
            .filter_map(|line| line.trim().strip_prefix('|'))
            .filter_map(|row| row.split('|').next())
            .filter_map(|cell| cell.trim().strip_prefix('`'))
            .filter_map(|code| {
                let name: String = code
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                name.starts_with("outboxd_").then_some(name)
            })
            .collect()
    }

    #[test]
    fn the_metrics_document_lists_exactly_the_declared_names() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let doc = std::fs::read_to_string(path).expect("reading docs/metrics.md");
        let listed = documented(&doc);
        let declared: BTreeSet<String> = ALL.iter().map(|n| n.to_string()).collect();
        let unique: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "a metric is listed twice: {listed:?}"
        );
        let missing: Vec<_> = declared.difference(&unique).collect();
        let unknown: Vec<_> = unique.difference(&declared).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "docs/metrics.md misses {missing:?} and lists undeclared {unknown:?}"
        );
    }

    fn rust_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("reading the sources")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn metrics_are_recorded_by_the_declared_constants() {
        let crates = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut files = Vec::new();
        rust_files(crates, &mut files);
        let literal = literal_recordings();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for pattern in &literal {
                assert!(
                    !text.contains(pattern),
                    "{} records a metric by a literal name ({pattern}…): use the constant from outboxd_metrics",
                    file.display()
                );
            }
        }
    }

    /// A recording macro called with a string literal for its name, the
    /// text built at run time so this file does not contain it.
    fn literal_recordings() -> Vec<String> {
        ["counter", "gauge", "histogram"]
            .iter()
            .map(|kind| format!("{kind}!(\"{}", "outboxd_"))
            .collect()
    }

    #[test]
    fn every_declared_name_is_distinct() {
        let names: BTreeSet<&str> = ALL.into_iter().collect();
        assert_eq!(names.len(), ALL.len());
    }
}
