-- Ordered delivery per key (docs/architecture.md, "Ordered delivery"): the
-- ordering key of an event, an ordered webhook's flag and failure policy,
-- the key copied onto deliveries with an index of each key's unfinished
-- ones, and the rule of which delivery of a key may be claimed
-- (outbox.is_next_of_key, the SQL form of crates/core/src/ordering.rs).
-- The claims and the fan-out do not apply the rule yet, so an ordered
-- webhook is refused until they do.

ALTER TABLE outbox.events ADD COLUMN ordering_key text;
COMMENT ON COLUMN outbox.events.ordering_key IS
  'Events of one key go to an ordered webhook one at a time, in id order; null: unordered.';

ALTER TABLE outbox.webhooks
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    ADD COLUMN ordering_policy text NOT NULL DEFAULT 'skip';
COMMENT ON COLUMN outbox.webhooks.ordered IS
  'Deliver the events of one ordering key one at a time, in order.';
COMMENT ON COLUMN outbox.webhooks.ordering_policy IS
  'When a delivery of a key finally fails: skip (the next goes) or halt (the key waits for an admin).';

CREATE FUNCTION outbox.check_webhook_ordering() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ordering_policy IS NULL OR NEW.ordering_policy NOT IN ('skip', 'halt') THEN
        RAISE EXCEPTION 'webhook violates ordering_policy_known: ordering_policy must be skip (a failed event stays failed and the next one goes) or halt (the key waits for an admin) (got %)',
                coalesce(quote_literal(NEW.ordering_policy), 'null')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ordering_policy_known', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.ordered THEN
        RAISE EXCEPTION 'webhook violates ordered_available: ordered delivery is not available in this version (the claims do not keep the order of a key yet); leave ordered false'
            USING ERRCODE = 'feature_not_supported', CONSTRAINT = 'ordered_available', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER webhooks_check_ordering BEFORE INSERT OR UPDATE OF ordered, ordering_policy ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_ordering();

-- The key on the delivery, so the rule reads one index of deliveries. The
-- delivery's own admin release of a failure under halt: released_at.
ALTER TABLE outbox.deliveries
    ADD COLUMN ordering_key text,
    ADD COLUMN released_at timestamptz;

-- Each key's deliveries that can keep later ones waiting: unfinished, or
-- failed (which blocks under halt until released).
CREATE INDEX deliveries_open_by_key ON outbox.deliveries (webhook_id, ordering_key, event_id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'in_flight', 'failed');

-- is_next_of_key: whether a pending delivery may be claimed as far as
-- ordering goes: it has no key, its webhook is not ordered, or no earlier
-- delivery of its (webhook, key) is pending, in flight or (under halt)
-- failed and not released.
CREATE FUNCTION outbox.is_next_of_key(d outbox.deliveries, ordered boolean, policy text)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT d.ordering_key IS NULL OR NOT ordered OR NOT EXISTS (
        SELECT 1 FROM outbox.deliveries e
         WHERE e.webhook_id = d.webhook_id
           AND e.ordering_key = d.ordering_key
           AND e.event_id < d.event_id
           AND e.state IN ('pending', 'in_flight', 'failed')
           AND (e.state <> 'failed' OR (policy = 'halt' AND e.released_at IS NULL)))
$$;
COMMENT ON FUNCTION outbox.is_next_of_key(outbox.deliveries, boolean, text) IS
  'Whether a pending delivery of an ordered webhook is the next of its ordering key (see crates/core/src/ordering.rs).';

-- publish, with an ordering key. The parameters are the union of every
-- branch's (a tenant, then the ordering key), all but the first two
-- optional, so callers name what they use: publish('order.paid', p,
-- ordering_key => 'order-42'). This schema has no tenants: a tenant is
-- refused rather than dropped.
DROP FUNCTION IF EXISTS outbox.publish(text, jsonb, text, text);
DROP FUNCTION IF EXISTS outbox.publish(text, jsonb, text);
CREATE FUNCTION outbox.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL,
                               tenant text DEFAULT NULL, ordering_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_id     bigint;
    same_event boolean;
BEGIN
    IF $4 IS NOT NULL THEN
        RAISE EXCEPTION 'publish: this schema has no tenants (got tenant %)', quote_literal($4)
            USING ERRCODE = 'feature_not_supported';
    END IF;
    INSERT INTO outbox.events (event_type, payload, idempotency_key, ordering_key)
    VALUES ($1, $2, $3, $5)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT e.id, e.event_type = $1 AND e.payload = $2 INTO new_id, same_event
          FROM outbox.events e WHERE e.idempotency_key = $3;
        IF NOT same_event THEN
            RAISE EXCEPTION 'idempotency key % was already used for event %, with another event type or payload', quote_literal($3), new_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_idempotency_key_key',
                      TABLE = 'events', SCHEMA = 'outbox',
                      HINT = 'use a key per event; a repeat with the same type and payload returns the first event''s id';
        END IF;
    END IF;
    RETURN new_id;
END
$$;
