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
