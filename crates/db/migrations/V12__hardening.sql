-- outboxd schema, version 12: limits the publisher cannot move, secrets no
-- error message can show, and inputs refused at the door rather than
-- failing later (see docs/configuration.md and docs/guarantees.md).

-- 1. The payload limit. A setting (outbox.max_payload_bytes) is one any
--    role may change for its own session or connection, and pg_column_size
--    measured a payload that arrived compressed (INSERT ... SELECT from a
--    table) at its compressed size. The limit is now a row only the
--    schema's owner writes; the size is the uncompressed one. The value a
--    database had set carries over.
CREATE TABLE outbox.limits (
    singleton         boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_payload_bytes bigint NOT NULL CHECK (max_payload_bytes > 0)
);
COMMENT ON TABLE outbox.limits IS
  'Limits on what publishers write, changed by the schema''s owner: UPDATE outbox.limits SET max_payload_bytes = 4194304.';
INSERT INTO outbox.limits (max_payload_bytes)
VALUES (coalesce(nullif(current_setting('outbox.max_payload_bytes', true), '')::bigint, 1048576));

CREATE OR REPLACE FUNCTION outbox.max_payload_bytes() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT max_payload_bytes FROM outbox.limits);

-- The uncompressed size: the jsonb's own size when it is not compressed
-- (the usual case, and free to read), else the length of its JSON text.
CREATE FUNCTION outbox.payload_size(payload jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN pg_column_compression(payload) IS NULL THEN pg_column_size(payload)
            ELSE octet_length(payload::text) END;

CREATE OR REPLACE FUNCTION outbox.payload_within_limit(payload jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    size        bigint := outbox.payload_size(payload);
    limit_bytes bigint := outbox.max_payload_bytes();
BEGIN
    IF size > limit_bytes THEN
        RAISE EXCEPTION 'outbox event payload is % bytes, over the limit of % bytes', size, limit_bytes
            USING ERRCODE = 'check_violation',
                  HINT = 'publish a reference to the data instead, or have the schema''s owner raise the limit: UPDATE outbox.limits SET max_payload_bytes = <bytes>';
    END IF;
    RETURN true;
END
$$;

-- As in V10, with the limit read beside the wake-up flag in one query,
-- and an event for one webhook refused when that webhook does not exist
-- (it would be fanned out to nobody). Not a foreign key: deleting a webhook
-- must neither fail for its old test events nor turn them into events for
-- everyone.
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

-- 2. Webhook secrets in a table of their own. A NOT NULL or CHECK failure
--    on a row answers "DETAIL: Failing row contains (...)" with the whole
--    row, and writes it to the server log: a row of outbox.webhooks no
--    longer holds a secret to show. outbox.webhook_secrets has one row per
--    webhook, made by a trigger when the webhook is added, and a BEFORE
--    trigger of its own that refuses bad values with messages that never
--    print the row. A change of secrets touches the webhook, so daemons
--    reload it as they do any change of a webhook.
CREATE TABLE outbox.webhook_secrets (
    webhook_id                 bigint PRIMARY KEY REFERENCES outbox.webhooks (id) ON DELETE CASCADE,
    secret                     text NOT NULL DEFAULT outbox.generate_secret(),
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT secret_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    CONSTRAINT previous_secret_format
        CHECK (previous_secret IS NULL OR previous_secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    CONSTRAINT previous_secret_has_expiry
        CHECK (previous_secret IS NULL OR previous_secret_expires_at IS NOT NULL)
);
COMMENT ON TABLE outbox.webhook_secrets IS
  'The signing secret of each webhook (made when the webhook is added), and during a rotation the previous one, which also signs until previous_secret_expires_at.';

INSERT INTO outbox.webhook_secrets (webhook_id, secret, previous_secret, previous_secret_expires_at)
SELECT id, secret, previous_secret, previous_secret_expires_at FROM outbox.webhooks;

-- As in V6, without the secret checks (they move to the secrets table).
CREATE OR REPLACE FUNCTION outbox.check_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad_header text;
BEGIN
    IF NEW.name IS NULL OR btrim(NEW.name) = '' THEN
        RAISE EXCEPTION 'webhook violates name_not_blank: the name must not be blank'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'name_not_blank', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.url IS NULL OR NEW.url !~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$' THEN
        RAISE EXCEPTION 'webhook violates url_scheme: the URL must be http:// or https:// with a host, no spaces and no user:password@ (%)',
                CASE WHEN position('@' IN coalesce(NEW.url, '')) > 0 THEN 'credentials not shown'
                     ELSE coalesce(left(NEW.url, 200), 'null') END
            USING ERRCODE = 'check_violation', CONSTRAINT = 'url_scheme', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF octet_length(NEW.url) > 8192 THEN
        RAISE EXCEPTION 'webhook violates url_length: the URL is % bytes, over the limit of 8192', octet_length(NEW.url)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'url_length', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.event_types IS NULL OR NOT outbox.are_valid_patterns(NEW.event_types) THEN
        RAISE EXCEPTION 'webhook violates event_types_syntax: each pattern must be an event type such as payment.received, a prefix such as payment.*, or * (got %)',
                coalesce(NEW.event_types::text, 'null')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'event_types_syntax', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.headers IS NULL OR jsonb_typeof(NEW.headers) <> 'object' THEN
        RAISE EXCEPTION 'webhook violates headers_object: headers must be a JSON object of name: value'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'headers_object', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.headers IS DISTINCT FROM OLD.headers)
       AND NOT outbox.are_valid_headers(NEW.headers) THEN
        -- Name the first bad header; values may be credentials and are not shown.
        SELECT h.name INTO bad_header
          FROM jsonb_each(NEW.headers) AS h(name, value)
         WHERE NOT outbox.are_valid_headers(jsonb_build_object(h.name, h.value))
         LIMIT 1;
        RAISE EXCEPTION 'webhook violates headers_valid: header % is not allowed (names must be HTTP tokens and not set by outboxd or hop-by-hop; values strings without control characters; the value is not shown)',
                coalesce(quote_literal(bad_header), '?')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'headers_valid', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    -- NOT NULL failures would print the row, headers included (their
    -- values may be credentials): refused here first, by name.
    -- updated_at is set by webhooks_touch on UPDATE.
    IF NEW.enabled IS NULL OR NEW.created_at IS NULL
       OR (TG_OP = 'INSERT' AND NEW.updated_at IS NULL) THEN
        RAISE EXCEPTION 'webhook violates not-null: % must not be null',
                CASE WHEN NEW.enabled IS NULL THEN 'enabled'
                     WHEN NEW.created_at IS NULL THEN 'created_at'
                     ELSE 'updated_at' END
            USING ERRCODE = 'not_null_violation', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;

ALTER TABLE outbox.webhooks
    DROP COLUMN secret,
    DROP COLUMN previous_secret,
    DROP COLUMN previous_secret_expires_at;

CREATE FUNCTION outbox.check_webhook_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.webhook_id IS NULL THEN
        RAISE EXCEPTION 'webhook secret violates not-null: webhook_id must be set'
            USING ERRCODE = 'not_null_violation', TABLE = 'webhook_secrets', SCHEMA = 'outbox';
    END IF;
    IF NEW.secret IS NULL OR NEW.secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
        RAISE EXCEPTION 'webhook secret violates secret_format: the secret must be whsec_ followed by base64 (the value is not shown)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'secret_format', TABLE = 'webhook_secrets', SCHEMA = 'outbox';
    END IF;
    IF NEW.previous_secret IS NOT NULL AND NEW.previous_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
        RAISE EXCEPTION 'webhook secret violates previous_secret_format: the previous secret must be whsec_ followed by base64 (the value is not shown)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'previous_secret_format', TABLE = 'webhook_secrets', SCHEMA = 'outbox';
    END IF;
    IF NEW.previous_secret IS NOT NULL AND NEW.previous_secret_expires_at IS NULL THEN
        RAISE EXCEPTION 'webhook secret violates previous_secret_has_expiry: a previous secret needs previous_secret_expires_at'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'previous_secret_has_expiry', TABLE = 'webhook_secrets', SCHEMA = 'outbox';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER webhook_secrets_check BEFORE INSERT OR UPDATE ON outbox.webhook_secrets
    FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_secret();

CREATE FUNCTION outbox.add_webhook_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox.webhook_secrets (webhook_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_add_secret AFTER INSERT ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.add_webhook_secret();

CREATE FUNCTION outbox.touch_webhook_of_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox.webhooks SET updated_at = now() WHERE id = NEW.webhook_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_secrets_touch AFTER UPDATE ON outbox.webhook_secrets
    FOR EACH ROW EXECUTE FUNCTION outbox.touch_webhook_of_secret();

-- As in V3, on the secrets table.
CREATE OR REPLACE FUNCTION outbox.rotate_secret(webhook_id bigint, overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    new_secret text;
BEGIN
    IF overlap IS NULL OR overlap < interval '0' THEN
        RAISE EXCEPTION 'overlap must be zero or more, got %', overlap
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE outbox.webhook_secrets s
       SET previous_secret = CASE WHEN overlap > interval '0' THEN s.secret END,
           previous_secret_expires_at = CASE WHEN overlap > interval '0' THEN now() + overlap END,
           secret = outbox.generate_secret()
     WHERE s.webhook_id = rotate_secret.webhook_id
    RETURNING s.secret INTO new_secret;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist', rotate_secret.webhook_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN new_secret;
END
$$;

-- Adding a webhook and reading its secret in one call.
CREATE FUNCTION outbox.add_webhook(name text, url text, event_types text[] DEFAULT '{*}',
                                   headers jsonb DEFAULT '{}')
RETURNS TABLE (id bigint, secret text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO outbox.webhooks (name, url, event_types, headers)
    VALUES ($1, $2, $3, $4)
    RETURNING id INTO new_id;
    RETURN QUERY SELECT s.webhook_id, s.secret FROM outbox.webhook_secrets s WHERE s.webhook_id = new_id;
END
$$;

-- 3. publish: a key used again for another event (another type or payload)
--    is refused instead of silently answering with the first event, which
--    would drop the second. SECURITY DEFINER so that comparing with the
--    first event needs no SELECT on events: the publisher reads no one's
--    idempotency keys or payloads (deploy/postgres/roles.sql).
CREATE OR REPLACE FUNCTION outbox.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    new_id     bigint;
    same_event boolean;
BEGIN
    INSERT INTO outbox.events (event_type, payload, idempotency_key)
    VALUES ($1, $2, $3)
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
