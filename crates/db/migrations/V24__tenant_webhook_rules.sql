-- A tenant's webhook carries only the headers a tenant may set, whoever
-- writes the row (docs/architecture.md, "Tenants' webhooks, whoever writes
-- them"): the portal, an admin through the console, the API or the CLI, or
-- plain SQL. The rule is crates/core/src/matching.rs
-- (tenant_may_set_header); a test compares the two. The deliverer drops
-- such headers from a tenant's requests too, so rows written before this
-- migration send none of them either.

CREATE FUNCTION outbox.is_tenant_header(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN NOT (lower(name) LIKE ANY (ARRAY['webhook-%', 'content-%', 'x-forwarded-%', 'proxy-%'])
            OR lower(name) IN ('host', 'forwarded', 'x-real-ip', 'via', 'expect',
                               'accept-encoding', 'x-http-method-override'));
COMMENT ON FUNCTION outbox.is_tenant_header(text) IS
  'Whether a tenant''s webhook may carry this header: not webhook-*, content-*, x-forwarded-*, proxy-*, host, forwarded, x-real-ip, via, expect, accept-encoding or x-http-method-override.';

-- Named to sort before webhooks_touch. The value is never shown: it may be
-- a credential.
CREATE FUNCTION outbox.check_webhook_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad_header text;
BEGIN
    IF NEW.tenant IS NULL OR jsonb_typeof(NEW.headers) IS DISTINCT FROM 'object' THEN
        RETURN NEW;
    END IF;
    SELECT h.name INTO bad_header
      FROM jsonb_object_keys(NEW.headers) AS h(name)
     WHERE NOT outbox.is_tenant_header(h.name)
     ORDER BY h.name
     LIMIT 1;
    IF bad_header IS NOT NULL THEN
        RAISE EXCEPTION 'webhook violates tenant_headers: header % cannot be set on a tenant''s webhook (outboxd''s signature, the body''s framing and routing headers are the platform''s; the value is not shown)',
                quote_literal(bad_header)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'tenant_headers', TABLE = 'webhooks', SCHEMA = 'outbox',
                  HINT = 'remove the header, or keep the webhook the platform''s (tenant null)';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER webhooks_check_tenant BEFORE INSERT OR UPDATE OF headers, tenant ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_tenant();
