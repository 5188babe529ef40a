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

-- As in V10, with the limit read beside the wake-up flag in one query.
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
