-- outboxd schema, version 15: tenants.
--
-- A platform that sends webhooks to its customers marks each customer's
-- events and webhooks with the customer's tenant id. A tenant's webhook
-- gets only that tenant's events; a platform webhook (tenant null) gets
-- the matching events of every tenant and of the platform; a platform
-- event (tenant null) goes to platform webhooks only. The fan-out applies
-- the rule (outboxd_core::matching::tenant_receives); here are the columns,
-- the id format, and idempotency keys that are unique per tenant.
--
-- The insert trigger checks the tenant only when one is given, so
-- installations without tenants pay one null test per event.

CREATE FUNCTION outbox.is_valid_tenant(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN t ~ '^[a-z0-9][a-z0-9_.-]{0,63}$';
COMMENT ON FUNCTION outbox.is_valid_tenant(text) IS
  'A tenant id: 1 to 64 characters, lowercase letters, digits and _ . -, starting with a letter or digit.';

CREATE FUNCTION outbox.refuse_tenant(t text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'new row for relation "events" violates check constraint "tenant_format"'
        USING ERRCODE = 'check_violation',
              CONSTRAINT = 'tenant_format',
              DETAIL = format('tenant %L: 1 to 64 characters, lowercase letters, digits and _ . - only, starting with a letter or digit',
                              left(t, 80));
END
$$;

ALTER TABLE outbox.events ADD COLUMN tenant text;
COMMENT ON COLUMN outbox.events.tenant IS
  'the customer this event belongs to; null: a platform event, for platform webhooks only';
ALTER TABLE outbox.webhooks ADD COLUMN tenant text;
ALTER TABLE outbox.webhooks ADD CONSTRAINT tenant_format
    CHECK (tenant IS NULL OR outbox.is_valid_tenant(tenant));
COMMENT ON COLUMN outbox.webhooks.tenant IS
  'the customer whose endpoint this is (it gets that tenant''s events only); null: a platform webhook, for every event';
CREATE INDEX webhooks_tenant ON outbox.webhooks (tenant) WHERE tenant IS NOT NULL;

-- The backlog view lists `e.*` as it was when made: again, with the tenant.
CREATE OR REPLACE VIEW outbox.undispatched_events AS
SELECT e.*
  FROM outbox.events e
 WHERE (e.xid, e.id) > (coalesce((SELECT after_xid FROM outbox.dispatch_state),
                                 pg_snapshot_xmax((SELECT done FROM outbox.dispatch_state))),
                        coalesce((SELECT after_id FROM outbox.dispatch_state), 0))
   AND e.dispatched_at IS NULL
   AND NOT pg_visible_in_snapshot(e.xid, (SELECT done FROM outbox.dispatch_state))
UNION ALL
SELECT e.*
  FROM outbox.events e
 WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(coalesce(upto, done)) FROM outbox.dispatch_state))
   AND (e.xid, e.id) <= (coalesce((SELECT after_xid FROM outbox.dispatch_state),
                                  pg_snapshot_xmax((SELECT done FROM outbox.dispatch_state))),
                         coalesce((SELECT after_id FROM outbox.dispatch_state), 0))
   AND e.dispatched_at IS NULL
   AND NOT pg_visible_in_snapshot(e.xid, (SELECT done FROM outbox.dispatch_state));

-- Idempotency keys are unique per tenant ('' cannot be a tenant id, so it
-- stands for the platform).
ALTER TABLE outbox.events DROP CONSTRAINT events_idempotency_key_key;
CREATE UNIQUE INDEX events_idempotency_key ON outbox.events ((coalesce(tenant, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- As in V12 (the limit read beside the wake-up flag), with the tenant
-- checked when one is given.
CREATE OR REPLACE FUNCTION outbox.on_event_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wake      boolean;
    max_bytes bigint;
BEGIN
    NEW.xid := pg_current_xact_id();
    IF NOT coalesce(outbox.is_valid_event_type(NEW.event_type), true) THEN
        PERFORM outbox.refuse_event_type(NEW.event_type);
    END IF;
    IF NEW.tenant IS NOT NULL AND NOT outbox.is_valid_tenant(NEW.tenant) THEN
        PERFORM outbox.refuse_tenant(NEW.tenant);
    END IF;
    -- Two IFs: the outer test is a simple expression, cheap for the usual
    -- event with no target; one with the subquery would run through the
    -- executor on every insert.
    IF NEW.target_webhook_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM outbox.webhooks w WHERE w.id = NEW.target_webhook_id) THEN
            RAISE EXCEPTION 'outbox event for webhook %, which does not exist', NEW.target_webhook_id
                USING ERRCODE = 'foreign_key_violation', TABLE = 'events', SCHEMA = 'outbox',
                      HINT = 'target_webhook_id must be the id of a row of outbox.webhooks';
        END IF;
    END IF;
    SELECT w.requested, l.max_payload_bytes INTO wake, max_bytes
      FROM outbox.wakeup w CROSS JOIN outbox.limits l;
    IF pg_column_size(NEW.payload) > max_bytes
       OR pg_column_compression(NEW.payload) IS NOT NULL THEN
        PERFORM outbox.payload_within_limit(NEW.payload);
    END IF;
    IF wake THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NEW;
END
$$;

-- A tenant set on an existing event is checked as on insert.
CREATE FUNCTION outbox.on_event_tenant_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant IS NOT NULL AND NOT outbox.is_valid_tenant(NEW.tenant) THEN
        PERFORM outbox.refuse_tenant(NEW.tenant);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_tenant_update BEFORE UPDATE OF tenant ON outbox.events
    FOR EACH ROW EXECUTE FUNCTION outbox.on_event_tenant_update();

-- publish gains the tenant; with an idempotency key, a repeat within the
-- same tenant is a no-op that returns the first event's id.
DROP FUNCTION outbox.publish(text, jsonb, text);
CREATE FUNCTION outbox.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL,
                               tenant text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO outbox.events (event_type, payload, idempotency_key, tenant)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT ((coalesce(tenant, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT e.id INTO new_id FROM outbox.events e
         WHERE e.idempotency_key = $3 AND coalesce(e.tenant, '') = coalesce($4, '');
    END IF;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION outbox.publish(text, jsonb, text, text) IS
  'Inserts an event (of a tenant when given); with an idempotency key, a repeat within the tenant returns the first event''s id and sends nothing.';
