-- outboxd schema, version 6: input checks that never show a secret and
-- never stop the daemon's own updates.
--
-- 1. A failed CHECK on outbox.webhooks makes PostgreSQL answer with
--    "DETAIL: Failing row contains (...)", the whole row, secret included,
--    and write that to the server log. A BEFORE trigger now runs the same
--    checks first and raises an error of its own that names the constraint
--    and the field, so the row is never printed. The V1 CHECKs stay.
-- 2. V5's NOT VALID constraints were checked again on every UPDATE, so one
--    old row over a limit would have made the daemon's own updates fail
--    (marking an event dispatched, disabling a webhook), and the payload
--    check ran on every dispatched event. They become checks on insert, and
--    for headers on a change of headers.

ALTER TABLE outbox.events DROP CONSTRAINT payload_size;
ALTER TABLE outbox.webhooks DROP CONSTRAINT headers_valid;

CREATE FUNCTION outbox.check_event_payload() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM outbox.payload_within_limit(NEW.payload);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_payload_size BEFORE INSERT ON outbox.events
    FOR EACH ROW EXECUTE FUNCTION outbox.check_event_payload();

CREATE FUNCTION outbox.check_webhook() RETURNS trigger
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
                     ELSE coalesce(NEW.url, 'null') END
            USING ERRCODE = 'check_violation', CONSTRAINT = 'url_scheme', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.event_types IS NULL OR NOT outbox.are_valid_patterns(NEW.event_types) THEN
        RAISE EXCEPTION 'webhook violates event_types_syntax: each pattern must be an event type such as payment.received, a prefix such as payment.*, or * (got %)',
                coalesce(NEW.event_types::text, 'null')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'event_types_syntax', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    IF NEW.secret IS NULL OR NEW.secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
        RAISE EXCEPTION 'webhook violates secret_format: the secret must be whsec_ followed by base64 (the value is not shown)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'secret_format', TABLE = 'webhooks', SCHEMA = 'outbox';
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
    IF NEW.previous_secret IS NOT NULL AND NEW.previous_secret !~ '^whsec_[A-Za-z0-9+/]+={0,2}$' THEN
        RAISE EXCEPTION 'webhook violates previous_secret_format: the previous secret must be whsec_ followed by base64 (the value is not shown)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'previous_secret_format', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;

-- Named to sort before webhooks_touch: BEFORE triggers fire in name order.
CREATE TRIGGER webhooks_check BEFORE INSERT OR UPDATE ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook();
