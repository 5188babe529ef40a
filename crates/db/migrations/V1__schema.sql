-- outboxd schema, version 1: the whole SQL surface of DESIGN.md.
--
-- Applications write outbox.events (or call outbox.publish); admins write
-- outbox.webhooks and outbox.event_types and read outbox.delivery_log; the
-- daemon owns outbox.deliveries and outbox.delivery_attempts.

CREATE SCHEMA IF NOT EXISTS outbox;

-- The syntax checks live in functions so that the CHECK constraints, the
-- daemon and the admin CLI agree on one definition.
CREATE FUNCTION outbox.is_valid_event_type(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN t ~ '^[a-z0-9_.:-]{1,128}$';

CREATE FUNCTION outbox.are_valid_patterns(patterns text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN cardinality(patterns) > 0
   AND (SELECT bool_and(p IS NOT NULL AND p ~ '^(\*|[a-z0-9_.:-]{1,128}(\.\*)?)$')
          FROM unnest(patterns) AS p);

-- 24 random bytes, base64, as Standard Webhooks secrets are written. Built
-- from gen_random_uuid() (core PostgreSQL, a strong random source) so that no
-- extension is needed: about 180 of the 192 bits are random.
CREATE FUNCTION outbox.generate_secret() RETURNS text
LANGUAGE sql VOLATILE
RETURN 'whsec_' || encode(substring(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) FROM 1 FOR 24), 'base64');

CREATE TABLE outbox.events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type        text NOT NULL,
    payload           jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    idempotency_key   text UNIQUE,
    target_webhook_id bigint,
    dispatched_at     timestamptz,
    CONSTRAINT event_type_format CHECK (outbox.is_valid_event_type(event_type))
);
COMMENT ON TABLE outbox.events IS
  'The outbox: insert one row per event in the transaction of the business change. outboxd fans each one out to the matching webhooks.';
COMMENT ON COLUMN outbox.events.event_type IS 'lowercase, [a-z0-9_.:-], at most 128 characters, e.g. payment.received';
COMMENT ON COLUMN outbox.events.target_webhook_id IS 'deliver to this webhook only (test events, targeted sends)';
-- The dispatcher's claim reads only this index, however long the history.
CREATE INDEX events_undispatched ON outbox.events (id) WHERE dispatched_at IS NULL;

CREATE TABLE outbox.webhooks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL,
    url             text NOT NULL,
    event_types     text[] NOT NULL DEFAULT '{*}',
    secret          text NOT NULL DEFAULT outbox.generate_secret(),
    enabled         boolean NOT NULL DEFAULT true,
    headers         jsonb NOT NULL DEFAULT '{}',
    disabled_reason text,
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT url_scheme CHECK (url ~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$'),
    CONSTRAINT event_types_syntax CHECK (outbox.are_valid_patterns(event_types)),
    CONSTRAINT secret_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    CONSTRAINT headers_object CHECK (jsonb_typeof(headers) = 'object')
);
COMMENT ON TABLE outbox.webhooks IS
  'Subscribed endpoints. event_types holds patterns: an exact type, a prefix such as payment.*, or * for all.';

CREATE TABLE outbox.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        bigint NOT NULL,
    webhook_id      bigint NOT NULL,
    state           text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    -- The fencing token: bumped by every claim, never reset, so a result
    -- from a worker whose lease expired no longer matches and is ignored.
    lease           bigint NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_event_webhook UNIQUE (event_id, webhook_id),
    CONSTRAINT state_known CHECK (state IN ('pending', 'in_flight', 'delivered', 'failed', 'cancelled'))
);
COMMENT ON TABLE outbox.deliveries IS
  'One row per (event, webhook): pending -> in_flight -> delivered | pending (retry) | failed; cancelled when the webhook is disabled or deleted first.';
-- Claims of due deliveries and the reaper of expired leases read only these.
CREATE INDEX deliveries_due ON outbox.deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON outbox.deliveries (locked_until) WHERE state = 'in_flight';
-- Cancelling a disabled webhook's deliveries and replaying its failures.
CREATE INDEX deliveries_open_or_failed ON outbox.deliveries (webhook_id)
    WHERE state IN ('pending', 'failed');

CREATE TABLE outbox.delivery_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint NOT NULL,
    event_id      bigint NOT NULL,
    webhook_id    bigint NOT NULL,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    status_code   integer,
    error         text,
    response_body text,
    outcome       text NOT NULL,
    CONSTRAINT outcome_known CHECK (outcome IN ('delivered', 'retry', 'failed'))
);
COMMENT ON TABLE outbox.delivery_attempts IS
  'The delivery log: one row per HTTP attempt. Read it through outbox.delivery_log.';
CREATE INDEX delivery_attempts_delivery ON outbox.delivery_attempts (delivery_id);

CREATE TABLE outbox.event_types (
    name            text PRIMARY KEY,
    description     text NOT NULL DEFAULT '',
    example_payload jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT event_type_format CHECK (outbox.is_valid_event_type(name))
);
COMMENT ON TABLE outbox.event_types IS
  'The event catalog: documentation for admins and the payload of test events. It documents; it does not gate.';

-- What an admin reads: every attempt with its event type, webhook name and
-- URL, newest first. The secret is deliberately not here.
CREATE VIEW outbox.delivery_log AS
SELECT a.id          AS attempt_id,
       a.started_at,
       a.webhook_id,
       w.name        AS webhook_name,
       w.url         AS webhook_url,
       a.event_id,
       e.event_type,
       a.delivery_id,
       a.attempt,
       a.outcome,
       a.status_code,
       a.error,
       a.duration_ms,
       a.response_body,
       d.state       AS delivery_state
  FROM outbox.delivery_attempts a
  LEFT JOIN outbox.webhooks w ON w.id = a.webhook_id
  LEFT JOIN outbox.events e ON e.id = a.event_id
  LEFT JOIN outbox.deliveries d ON d.id = a.delivery_id
 ORDER BY a.id DESC;

-- updated_at upkeep for the tables people edit by hand. The daemon sets
-- deliveries.updated_at in its own statements, which keeps a per-row trigger
-- off the hot path.
CREATE FUNCTION outbox.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER webhooks_touch BEFORE UPDATE ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.touch_updated_at();
CREATE TRIGGER event_types_touch BEFORE UPDATE ON outbox.event_types
    FOR EACH ROW EXECUTE FUNCTION outbox.touch_updated_at();

-- A disabled or deleted webhook gets nothing more: its waiting deliveries are
-- cancelled (in-flight ones finish and record their result).
CREATE FUNCTION outbox.cancel_deliveries_of_gone_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox.deliveries
       SET state = 'cancelled', locked_until = NULL, updated_at = now(),
           last_error = coalesce(last_error, CASE WHEN TG_OP = 'DELETE' THEN 'webhook deleted' ELSE 'webhook disabled' END)
     WHERE webhook_id = OLD.id AND state = 'pending';
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_cancel_on_disable AFTER UPDATE OF enabled ON outbox.webhooks
    FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled)
    EXECUTE FUNCTION outbox.cancel_deliveries_of_gone_webhook();
CREATE TRIGGER webhooks_cancel_on_delete AFTER DELETE ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.cancel_deliveries_of_gone_webhook();

-- Wake-up. NOTIFY makes PostgreSQL serialize the commits of notifying
-- transactions, so the host's inserts notify only while some daemon sleeps
-- and has asked for it (wakeup.requested); a busy daemon costs the host
-- nothing. Polling stays the safety net for a notification never sent.
CREATE TABLE outbox.wakeup (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    requested boolean NOT NULL DEFAULT true
);
INSERT INTO outbox.wakeup DEFAULT VALUES;

CREATE FUNCTION outbox.notify_new_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT requested FROM outbox.wakeup) THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NULL;
END
$$;
-- FOR EACH STATEMENT: at most one notification per statement, and
-- PostgreSQL folds repeats within one transaction into one.
CREATE TRIGGER events_notify AFTER INSERT ON outbox.events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_new_events();

CREATE FUNCTION outbox.notify_webhooks_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_webhooks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_notify AFTER INSERT OR UPDATE OR DELETE ON outbox.webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();

-- publish: insert an event; with an idempotency key, a repeat is a no-op that
-- returns the first event's id.
CREATE FUNCTION outbox.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO outbox.events (event_type, payload, idempotency_key)
    VALUES ($1, $2, $3)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT e.id INTO new_id FROM outbox.events e WHERE e.idempotency_key = $3;
    END IF;
    RETURN new_id;
END
$$;

-- send_test_event: the catalog's example payload (or {"test": true}) as an
-- event for one webhook only, delivered by the running daemon.
CREATE FUNCTION outbox.send_test_event(webhook_id bigint, event_type text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    hook    outbox.webhooks%ROWTYPE;
    etype   text := coalesce($2, 'webhook.test');
    example jsonb;
    new_id  bigint;
BEGIN
    SELECT * INTO hook FROM outbox.webhooks w WHERE w.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT hook.enabled THEN
        RAISE EXCEPTION 'webhook % (%) is disabled: enable it first', hook.id, hook.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT t.example_payload INTO example FROM outbox.event_types t WHERE t.name = etype;
    INSERT INTO outbox.events (event_type, payload, target_webhook_id)
    VALUES (etype, coalesce(example, '{"test": true}'::jsonb), hook.id)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- replay: back to pending with a fresh attempt budget. Returns how many
-- deliveries were put back (0 when it is already pending or in flight).
CREATE FUNCTION outbox.replay(delivery_id bigint) RETURNS integer
LANGUAGE sql AS $$
    WITH replayed AS (
        UPDATE outbox.deliveries
           SET state = 'pending', attempts = 0, next_attempt_at = now(),
               locked_until = NULL, updated_at = now()
         WHERE id = $1 AND state IN ('delivered', 'failed', 'cancelled')
        RETURNING 1)
    SELECT count(*)::integer FROM replayed;
$$;

CREATE FUNCTION outbox.replay_failed(webhook_id bigint, since timestamptz) RETURNS integer
LANGUAGE sql AS $$
    WITH replayed AS (
        UPDATE outbox.deliveries
           SET state = 'pending', attempts = 0, next_attempt_at = now(),
               locked_until = NULL, updated_at = now()
         WHERE webhook_id = $1 AND state = 'failed' AND created_at >= $2
        RETURNING 1)
    SELECT count(*)::integer FROM replayed;
$$;
