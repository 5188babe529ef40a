-- outboxd schema, version 29: while a webhook's breaker holds it paused,
-- the fan-out writes its new events as one row per round (the webhook and
-- the round's event ids), not one delivery per event
-- (docs/architecture.md, "Dead and slow endpoints stay in their lane").
--
-- The rows become deliveries (`outbox.expand_deferred`) when the webhook
-- recovers, or one row at a time when its pause has ended with nothing
-- left to probe with; disabling or deleting the webhook makes them
-- cancelled deliveries, as it does its waiting ones. Retention keeps an
-- event while a row names it.

CREATE TABLE outbox.deferred_deliveries (
    webhook_id bigint NOT NULL,
    first_event_id bigint NOT NULL,
    last_event_id bigint NOT NULL,
    event_ids bigint[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- One fan-out round writes one row per webhook, and each event is
    -- fanned out once: a webhook's rows name disjoint events.
    PRIMARY KEY (webhook_id, first_event_id),
    CONSTRAINT deferred_deliveries_range CHECK (first_event_id <= last_event_id)
);
-- Retention asks whether a row names an old event: the rows that start
-- at or before it.
CREATE INDEX deferred_deliveries_first_event ON outbox.deferred_deliveries (first_event_id);

COMMENT ON TABLE outbox.deferred_deliveries IS
    'Written by outboxd: events fanned out to a webhook while its breaker held it paused, one row per webhook and fan-out round; they become deliveries when it recovers.';

-- Makes up to `max_rows` of the webhook's deferred rows deliveries, oldest
-- first: waiting ones while the webhook is enabled, else cancelled ones.
-- The webhook's row is locked first (FOR SHARE), so a disable or delete
-- either ran before (seen here) or waits and then cancels what this made.
-- Rows another call is expanding are skipped. Returns how many rows it
-- expanded (an event that has a delivery already gets no second one).
CREATE FUNCTION outbox.expand_deferred(webhook bigint, max_rows integer) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
WITH w AS (
    SELECT x.enabled FROM outbox.webhooks x WHERE x.id = $1 FOR SHARE),
picked AS (
    SELECT f.first_event_id FROM outbox.deferred_deliveries f
     WHERE f.webhook_id = $1
     ORDER BY f.first_event_id
     LIMIT $2
       FOR UPDATE SKIP LOCKED),
gone AS (
    DELETE FROM outbox.deferred_deliveries f
     USING picked
     WHERE f.webhook_id = $1 AND f.first_event_id = picked.first_event_id
    RETURNING f.event_ids),
made AS (
    INSERT INTO outbox.deliveries (event_id, webhook_id, state, last_error)
    SELECT e.id, $1,
           CASE WHEN coalesce((SELECT enabled FROM w), false) THEN 'pending' ELSE 'cancelled' END,
           CASE WHEN NOT EXISTS (SELECT 1 FROM w) THEN 'webhook deleted'
                WHEN NOT (SELECT enabled FROM w) THEN 'webhook disabled' END
      FROM gone, unnest(gone.event_ids) AS e(id)
     ORDER BY e.id
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING 1)
SELECT count(*) FROM gone
$$;

COMMENT ON FUNCTION outbox.expand_deferred(bigint, integer) IS
    'Makes up to max_rows of a webhook''s deferred rows deliveries (cancelled ones when it is disabled or gone); returns how many rows.';

-- Whether a deferred row names the event: retention keeps it.
CREATE FUNCTION outbox.is_deferred(event_id bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT 1 FROM outbox.deferred_deliveries f
                WHERE f.first_event_id <= event_id AND f.last_event_id >= event_id
                  AND event_id = ANY (f.event_ids));

-- What waits for a webhook: its deliveries waiting, held or in flight, and
-- its events deferred while it was paused. The admin's counts per webhook
-- (webhooks list, stats, tenants) read it.
CREATE FUNCTION outbox.open_deliveries(webhook bigint) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT count(*) FROM outbox.deliveries d
         WHERE d.webhook_id = webhook AND d.state IN ('pending', 'held', 'in_flight'))
     + (SELECT coalesce(sum(cardinality(f.event_ids)), 0)::int8
          FROM outbox.deferred_deliveries f WHERE f.webhook_id = webhook);

-- A disabled or deleted webhook gets nothing more: its waiting deliveries,
-- held ones included, are cancelled, and its deferred events become
-- cancelled deliveries. As in V21, with the deferred rows.
CREATE OR REPLACE FUNCTION outbox.cancel_deliveries_of_gone_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox.deliveries
       SET state = 'cancelled', locked_until = NULL, updated_at = now(),
           last_error = coalesce(last_error, CASE WHEN TG_OP = 'DELETE' THEN 'webhook deleted' ELSE 'webhook disabled' END)
     WHERE webhook_id = OLD.id AND state = 'pending';
    UPDATE outbox.deliveries
       SET state = 'cancelled', updated_at = now(),
           last_error = coalesce(last_error, CASE WHEN TG_OP = 'DELETE' THEN 'webhook deleted' ELSE 'webhook disabled' END)
     WHERE webhook_id = OLD.id AND ordering_key IS NOT NULL AND state = 'held';
    -- Expanded after this statement's change: the webhook reads as
    -- disabled or gone, so what is made is cancelled.
    WHILE outbox.expand_deferred(OLD.id, 100) > 0 LOOP
    END LOOP;
    RETURN NULL;
END
$$;
