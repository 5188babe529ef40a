-- outboxd schema, version 5: bounds on what applications and admins write.
--
-- A payload over the limit is refused at insert, in the application's own
-- transaction, with a message that says why and what to do: a huge payload
-- would otherwise be sent, retried and logged again and again. The limit is
-- 1 MiB unless the database (or a role, or a session) sets
-- `outbox.max_payload_bytes`, e.g.
--   ALTER DATABASE app SET outbox.max_payload_bytes = '4194304';
-- The size is the payload's jsonb size as given, before compression.

CREATE FUNCTION outbox.max_payload_bytes() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(nullif(current_setting('outbox.max_payload_bytes', true), '')::bigint, 1048576);

-- Raises rather than returning false so the application sees the size and
-- the limit, not only a constraint name.
CREATE FUNCTION outbox.payload_within_limit(payload jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    size        integer := pg_column_size(payload);
    limit_bytes bigint := outbox.max_payload_bytes();
BEGIN
    IF size > limit_bytes THEN
        RAISE EXCEPTION 'outbox event payload is % bytes, over the limit of % bytes', size, limit_bytes
            USING ERRCODE = 'check_violation',
                  HINT = 'publish a reference to the data instead, or raise the limit: ALTER DATABASE ... SET outbox.max_payload_bytes = ''<bytes>''';
    END IF;
    RETURN true;
END
$$;

-- NOT VALID: rows already in the outbox are not re-checked (they may be
-- delivered already); every new row is.
ALTER TABLE outbox.events
    ADD CONSTRAINT payload_size CHECK (outbox.payload_within_limit(payload)) NOT VALID;

-- Extra request headers of a webhook: an object of string values, names that
-- are HTTP tokens and not one of the headers outboxd sets itself or a
-- hop-by-hop header, values without control characters (no header
-- injection through CR/LF). The deliverer (crates/deliverer/src/request.rs,
-- RESERVED) and the admin CLI apply the same rules.
CREATE FUNCTION outbox.are_valid_headers(headers jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN jsonb_typeof(headers) = 'object'
   AND NOT EXISTS (
        SELECT 1 FROM jsonb_each(headers) AS h(name, value)
         WHERE h.name !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,128}$'
            OR lower(h.name) IN ('content-type', 'content-length', 'host', 'user-agent',
                                 'webhook-id', 'webhook-timestamp', 'webhook-signature',
                                 'connection', 'keep-alive', 'transfer-encoding', 'te',
                                 'trailer', 'upgrade', 'proxy-connection')
            OR jsonb_typeof(h.value) <> 'string'
            OR length(h.value #>> '{}') > 4096
            OR (h.value #>> '{}') ~ '[\x01-\x08\x0a-\x1f\x7f]');

ALTER TABLE outbox.webhooks
    ADD CONSTRAINT headers_valid CHECK (outbox.are_valid_headers(headers)) NOT VALID;
COMMENT ON COLUMN outbox.webhooks.headers IS
  'extra request headers, e.g. {"authorization": "Bearer ..."}: string values, no control characters; outboxd''s own and hop-by-hop headers are refused';
