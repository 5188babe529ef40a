-- outboxd schema, version 2: indexes for the retention job (poller/src/janitor.rs).
--
-- The janitor deletes, in batches of 1000 and oldest first, delivery attempts
-- by started_at and finished events by dispatched_at. Without these indexes
-- each batch would scan the whole history.
--
-- On a large existing history these builds block writes to the two tables
-- while they run (migrations run in a transaction, so not CONCURRENTLY). To
-- avoid that, create them beforehand with the same names:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS delivery_attempts_started_at
--       ON outbox.delivery_attempts (started_at);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS events_dispatched_at
--       ON outbox.events (dispatched_at) WHERE dispatched_at IS NOT NULL;

-- A btree rather than BRIN: attempts arrive nearly in started_at order, but
-- "the oldest 1000" with a LIMIT is an index range scan that stops early.
CREATE INDEX IF NOT EXISTS delivery_attempts_started_at
    ON outbox.delivery_attempts (started_at);

-- dispatched_at already appears in events_undispatched's predicate, so this
-- index costs the dispatcher no HOT updates it had.
CREATE INDEX IF NOT EXISTS events_dispatched_at
    ON outbox.events (dispatched_at) WHERE dispatched_at IS NOT NULL;
