-- outboxd schema, version 4: what the circuit breaker learns about a webhook.
--
-- After OUTBOXD_BREAKER_THRESHOLD failed attempts in a row a daemon pauses the
-- webhook: its waiting deliveries are moved to paused_until (their attempts
-- are not spent), and one probe is sent when the pause ends. failing_since is
-- when the current run of failures was first noticed; a webhook still failing
-- OUTBOXD_DISABLE_FAILING_AFTER later, with no delivered attempt since, is
-- disabled with a reason. A separate table, so that this bookkeeping neither
-- touches webhooks.updated_at nor wakes every daemon's webhook cache.

CREATE TABLE outbox.webhook_health (
    webhook_id    bigint PRIMARY KEY REFERENCES outbox.webhooks (id) ON DELETE CASCADE,
    failing_since timestamptz,
    paused_until  timestamptz,
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE outbox.webhook_health IS
  'Written by outboxd: when a webhook started failing and until when its deliveries are paused. No row, or nulls, means healthy.';
