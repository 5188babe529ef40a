-- outboxd schema, version 7: cheaper writes per delivery (see README,
-- Performance).
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

-- The result of an attempt is written where the row is still in_flight under
-- its lease. With an index whose predicate is state = 'in_flight', the
-- planner took that index for the write (it estimates few rows in flight)
-- and walked its dead entries, one per delivery since the last vacuum,
-- instead of looking the rows up by id. Keyed on locked_until alone, the
-- index still serves the reaper (state = 'in_flight' AND locked_until <
-- now()) and no longer matches the result write.
DROP INDEX outbox.deliveries_leased;
CREATE INDEX deliveries_leased ON outbox.deliveries (locked_until)
    WHERE locked_until IS NOT NULL;

-- The same rule as before, written so PostgreSQL's regex engine does not
-- expand {1,128} into a large automaton: about 10 us per check before, 0.3
-- after. It runs on every insert into outbox.events (and every update, as
-- a CHECK).
CREATE OR REPLACE FUNCTION outbox.is_valid_event_type(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN t ~ '^[a-z0-9_.:-]+$' AND length(t) <= 128;

-- The application's insert runs one trigger instead of two: the payload
-- limit and the wake-up in one row trigger. PostgreSQL sends a channel's
-- identical notifications once per transaction, so a multi-row insert still
-- notifies once. The size is checked by the plpgsql function (with its
-- message) only when it is over the limit.
CREATE FUNCTION outbox.on_event_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_column_size(NEW.payload) > outbox.max_payload_bytes() THEN
        PERFORM outbox.payload_within_limit(NEW.payload);
    END IF;
    IF (SELECT requested FROM outbox.wakeup) THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_insert BEFORE INSERT ON outbox.events
    FOR EACH ROW EXECUTE FUNCTION outbox.on_event_insert();
DROP TRIGGER events_payload_size ON outbox.events;
DROP TRIGGER events_notify ON outbox.events;
DROP FUNCTION outbox.check_event_payload();
DROP FUNCTION outbox.notify_new_events();
