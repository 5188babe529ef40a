-- outboxd schema, version 7: claims by webhook, and fewer index writes.
--
-- The deliverer claims, for each webhook it has room for, that webhook's
-- oldest due deliveries: an index on (webhook_id, next_attempt_at) over the
-- pending rows serves those claims, the cancelling of a disabled webhook's
-- waiting deliveries and the pause of a failing one. It replaces two
-- indexes, so a pending row costs one index entry fewer. Replays of failed
-- deliveries get a small index of their own.

DROP INDEX outbox.deliveries_due;
DROP INDEX outbox.deliveries_open_or_failed;
CREATE INDEX deliveries_due ON outbox.deliveries (webhook_id, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX deliveries_failed ON outbox.deliveries (webhook_id)
    WHERE state = 'failed';

-- Retention finds the oldest attempts by id (they are written in started_at
-- order, give or take a request's duration) and stops at the first batch
-- that is not all old, so the index on started_at, one more write for every
-- attempt, goes.
DROP INDEX outbox.delivery_attempts_started_at;
