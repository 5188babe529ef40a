-- The outbox schema as the migrations in crates/db/migrations leave it
-- (pg_dump --schema-only --schema=outbox, owners and grants left out;
-- deploy/postgres/roles.sql has the roles). Generated: do not edit;
-- OUTBOXD_WRITE_SCHEMA=1 cargo test -p outboxd-db --test schema rewrites it.

--
-- PostgreSQL database dump
--

--
-- Name: outbox; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA outbox;

--
-- Name: add_webhook(text, text, text[], jsonb); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.add_webhook(name text, url text, event_types text[] DEFAULT '{*}'::text[], headers jsonb DEFAULT '{}'::jsonb) RETURNS TABLE(id bigint, secret text)
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO outbox.webhooks (name, url, event_types, headers)
    VALUES ($1, $2, $3, $4)
    RETURNING id INTO new_id;
    RETURN QUERY SELECT s.webhook_id, s.secret FROM outbox.webhook_secrets s WHERE s.webhook_id = new_id;
END
$_$;

--
-- Name: add_webhook_secret(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.add_webhook_secret() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO outbox.webhook_secrets (webhook_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

--
-- Name: are_valid_headers(jsonb); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.are_valid_headers(headers jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((jsonb_typeof(headers) = 'object'::text) AND (NOT (EXISTS (SELECT 1 FROM jsonb_each(are_valid_headers.headers) h(name, value) WHERE ((h.name !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,128}$'::text) OR (lower(h.name) = ANY (ARRAY['content-type'::text, 'content-length'::text, 'host'::text, 'user-agent'::text, 'webhook-id'::text, 'webhook-timestamp'::text, 'webhook-signature'::text, 'connection'::text, 'keep-alive'::text, 'transfer-encoding'::text, 'te'::text, 'trailer'::text, 'upgrade'::text, 'proxy-connection'::text])) OR (jsonb_typeof(h.value) <> 'string'::text) OR (length((h.value #>> '{}'::text[])) > 4096) OR ((h.value #>> '{}'::text[]) ~ '[\x01-\x08\x0a-\x1f\x7f]'::text))))));

--
-- Name: are_valid_patterns(text[]); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.are_valid_patterns(patterns text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((cardinality(patterns) > 0) AND (SELECT bool_and(((p.p IS NOT NULL) AND (p.p ~ '^(\*|[a-z0-9_.:-]{1,128}(\.\*)?)$'::text))) AS bool_and FROM unnest(are_valid_patterns.patterns) p(p)));

--
-- Name: cancel_deliveries_of_gone_webhook(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.cancel_deliveries_of_gone_webhook() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: check_webhook(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.check_webhook() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
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
$_$;

--
-- Name: check_webhook_ordering(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.check_webhook_ordering() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.ordering_policy IS NULL OR NEW.ordering_policy NOT IN ('skip', 'halt') THEN
        RAISE EXCEPTION 'webhook violates ordering_policy_known: ordering_policy must be skip (a failed event stays failed and the next one goes) or halt (the key waits for an admin) (got %)',
                coalesce(quote_literal(NEW.ordering_policy), 'null')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ordering_policy_known', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: check_webhook_rate_limit(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.check_webhook_rate_limit() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.rate_limit IS NOT NULL AND NEW.rate_limit <= 0 THEN
        RAISE EXCEPTION 'webhook violates rate_limit_positive: rate_limit is requests per second and must be at least 1, or null for no limit (got %)',
                NEW.rate_limit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'rate_limit_positive', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: check_webhook_secret(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.check_webhook_secret() RETURNS trigger
    LANGUAGE plpgsql
    AS $_$
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
$_$;

--
-- Name: check_webhook_tenant(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.check_webhook_tenant() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: expand_deferred(bigint, integer); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.expand_deferred(webhook bigint, max_rows integer) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
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
$_$;

--
-- Name: FUNCTION expand_deferred(webhook bigint, max_rows integer); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.expand_deferred(webhook bigint, max_rows integer) IS 'Makes up to max_rows of a webhook''s deferred rows deliveries (cancelled ones when it is disabled or gone); returns how many rows.';

--
-- Name: express_candidates(pg_snapshot, pg_snapshot); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.express_candidates(since pg_snapshot, seen pg_snapshot) RETURNS TABLE(id bigint, event_type text, target_webhook_id bigint, payload text, created_at timestamp with time zone, tenant text, ordering_key text)
    LANGUAGE plpgsql STABLE
    AS $$
#variable_conflict use_column
DECLARE
    x xid8;
BEGIN
    -- Transactions running at `since` that have ended, oldest first: all
    -- below the horizon, so before the range in stream order.
    FOR x IN SELECT t FROM pg_snapshot_xip(since) AS t
              WHERE pg_visible_in_snapshot(t, seen) ORDER BY t LOOP
        RETURN QUERY
            SELECT v.id, v.event_type, v.target_webhook_id, v.payload::text,
                   v.created_at, v.tenant, v.ordering_key
              FROM outbox.events v
             WHERE v.xid = x AND v.tenant IS NOT NULL AND v.dispatched_at IS NULL
             ORDER BY v.id;
    END LOOP;
    RETURN QUERY
        SELECT v.id, v.event_type, v.target_webhook_id, v.payload::text,
               v.created_at, v.tenant, v.ordering_key
          FROM outbox.events v
         WHERE (v.xid, v.id) >= (pg_snapshot_xmax(since), 0)
           AND v.xid < pg_snapshot_xmax(seen)
           AND pg_visible_in_snapshot(v.xid, seen)
           AND v.tenant IS NOT NULL
           AND v.dispatched_at IS NULL
         ORDER BY v.xid, v.id;
END
$$;

--
-- Name: FUNCTION express_candidates(since pg_snapshot, seen pg_snapshot); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.express_candidates(since pg_snapshot, seen pg_snapshot) IS 'The express lane''s candidates: tenants'' events not fanned out of the transactions seen sees and since does not, in stream order. For outbox.next_events.';

--
-- Name: generate_secret(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.generate_secret() RETURNS text
    LANGUAGE sql
    RETURN ('whsec_'::text || encode(SUBSTRING((uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) FROM 1 FOR 24), 'base64'::text));

--
-- Name: deferred_deliveries; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.deferred_deliveries (
    webhook_id bigint NOT NULL,
    first_event_id bigint NOT NULL,
    last_event_id bigint NOT NULL,
    event_ids bigint[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT deferred_deliveries_range CHECK ((first_event_id <= last_event_id))
);

--
-- Name: TABLE deferred_deliveries; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.deferred_deliveries IS 'Written by outboxd: events fanned out to a webhook while its breaker held it paused, one row per webhook and fan-out round; they become deliveries when it recovers.';

--
-- Name: is_deferred(bigint); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_deferred(event_id bigint) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (EXISTS (SELECT 1 FROM outbox.deferred_deliveries f WHERE ((f.first_event_id <= is_deferred.event_id) AND (f.last_event_id >= is_deferred.event_id) AND (is_deferred.event_id = ANY (f.event_ids)))));

--
-- Name: dispatch_state; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.dispatch_state (
    singleton boolean DEFAULT true NOT NULL,
    done pg_snapshot NOT NULL,
    upto pg_snapshot,
    after_xid xid8,
    after_id bigint,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    express_seen pg_snapshot,
    express_waiting text[],
    CONSTRAINT dispatch_state_singleton_check CHECK (singleton),
    CONSTRAINT express_in_pass CHECK (((upto IS NOT NULL) OR ((express_seen IS NULL) AND (express_waiting IS NULL)))),
    CONSTRAINT pass_complete CHECK ((((upto IS NULL) = (after_xid IS NULL)) AND ((upto IS NULL) = (after_id IS NULL))))
);

--
-- Name: TABLE dispatch_state; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.dispatch_state IS 'How far outboxd has fanned out outbox.events (one row; see sql/V8__event_stream.sql). Written by the daemon only.';

--
-- Name: COLUMN dispatch_state.express_seen; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.dispatch_state.express_seen IS 'during a pass, once its express lane has run: every transaction this snapshot sees and upto does not has been looked at by the lane';

--
-- Name: COLUMN dispatch_state.express_waiting; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.dispatch_state.express_waiting IS 'during a pass: tenants whose events committed after upto wait for the next pass (one of them could not take the express lane)';

--
-- Name: events; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.events (
    id bigint NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    target_webhook_id bigint,
    dispatched_at timestamp with time zone,
    is_test boolean DEFAULT false NOT NULL,
    xid xid8 DEFAULT pg_current_xact_id(),
    tenant text,
    ordering_key text
);

--
-- Name: TABLE events; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.events IS 'The outbox: insert one row per event in the transaction of the business change. outboxd fans each one out to the matching webhooks.';

--
-- Name: COLUMN events.event_type; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.event_type IS 'lowercase, [a-z0-9_.:-], at most 128 characters, e.g. payment.received';

--
-- Name: COLUMN events.target_webhook_id; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.target_webhook_id IS 'deliver to this webhook only (test events, targeted sends)';

--
-- Name: COLUMN events.dispatched_at; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.dispatched_at IS 'set for test events, which are delivered at once, and for events fanned out before schema version 8; see outbox.undispatched_events';

--
-- Name: COLUMN events.is_test; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.is_test IS 'sent by outbox.send_test_event or `outboxd test-event`, not by the application';

--
-- Name: COLUMN events.xid; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.xid IS 'the writing transaction (pg_current_xact_id()), set by the insert trigger; the daemon reads events in (xid, id) order';

--
-- Name: COLUMN events.tenant; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.tenant IS 'the customer this event belongs to; null: a platform event, for platform webhooks only';

--
-- Name: COLUMN events.ordering_key; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.events.ordering_key IS 'Events of one key go to an ordered webhook one at a time, in id order; null: unordered.';

--
-- Name: is_dispatched(outbox.events); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_dispatched(e outbox.events) RETURNS boolean
    LANGUAGE sql STABLE
    RETURN (((e).dispatched_at IS NOT NULL) OR (SELECT (pg_visible_in_snapshot((is_dispatched.e).xid, s.done) OR ((s.upto IS NOT NULL) AND pg_visible_in_snapshot((is_dispatched.e).xid, s.upto) AND (ROW((is_dispatched.e).xid, (is_dispatched.e).id) <= ROW(s.after_xid, s.after_id)))) FROM outbox.dispatch_state s));

--
-- Name: deliveries; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.deliveries (
    id bigint NOT NULL,
    event_id bigint NOT NULL,
    webhook_id bigint NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    lease bigint DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now() NOT NULL,
    locked_until timestamp with time zone,
    last_status integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    earlier_attempts integer DEFAULT 0 NOT NULL,
    replays integer DEFAULT 0 NOT NULL,
    ordering_key text,
    released_at timestamp with time zone,
    CONSTRAINT state_known CHECK ((state = ANY (ARRAY['pending'::text, 'in_flight'::text, 'held'::text, 'delivered'::text, 'failed'::text, 'cancelled'::text])))
);

--
-- Name: TABLE deliveries; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.deliveries IS 'One row per (event, webhook): pending -> in_flight -> delivered | pending (retry) | failed; held while an earlier delivery of its ordering key is in the way (ordered webhooks); cancelled when the webhook is disabled or deleted first.';

--
-- Name: COLUMN deliveries.attempts; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.deliveries.attempts IS 'attempts since the delivery was created or last replayed: what the retry budget counts';

--
-- Name: COLUMN deliveries.earlier_attempts; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.deliveries.earlier_attempts IS 'attempts made before the last replay; attempt rows are numbered on from here';

--
-- Name: COLUMN deliveries.replays; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.deliveries.replays IS 'how often outbox.replay or replay_failed put it back';

--
-- Name: COLUMN deliveries.ordering_key; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.deliveries.ordering_key IS 'The event''s ordering key, copied when the webhook was ordered at fan-out; null: delivered without order.';

--
-- Name: COLUMN deliveries.released_at; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.deliveries.released_at IS 'When an admin skipped this failed delivery (outbox.skip_halted): it no longer halts its key.';

--
-- Name: is_next_of_key(outbox.deliveries, boolean, text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_next_of_key(d outbox.deliveries, ordered boolean, policy text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
    SELECT d.ordering_key IS NULL OR NOT ordered OR NOT EXISTS (
        SELECT 1 FROM outbox.deliveries e
         WHERE e.webhook_id = d.webhook_id
           AND e.ordering_key = d.ordering_key
           AND e.event_id < d.event_id
           AND e.state IN ('pending', 'in_flight', 'held', 'failed')
           AND (e.state <> 'failed' OR (policy = 'halt' AND e.released_at IS NULL)))
$$;

--
-- Name: FUNCTION is_next_of_key(d outbox.deliveries, ordered boolean, policy text); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.is_next_of_key(d outbox.deliveries, ordered boolean, policy text) IS 'Whether a pending delivery of an ordered webhook is the next of its ordering key (see crates/core/src/ordering.rs).';

--
-- Name: is_tenant_header(text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_tenant_header(name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (NOT ((lower(name) ~~ ANY (ARRAY['webhook-%'::text, 'content-%'::text, 'x-forwarded-%'::text, 'proxy-%'::text])) OR (lower(name) = ANY (ARRAY['host'::text, 'forwarded'::text, 'x-real-ip'::text, 'via'::text, 'expect'::text, 'accept-encoding'::text, 'x-http-method-override'::text]))));

--
-- Name: FUNCTION is_tenant_header(name text); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.is_tenant_header(name text) IS 'Whether a tenant''s webhook may carry this header: not webhook-*, content-*, x-forwarded-*, proxy-*, host, forwarded, x-real-ip, via, expect, accept-encoding or x-http-method-override.';

--
-- Name: is_valid_event_type(text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_valid_event_type(t text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ((t ~ '^[a-z0-9_.:-]+$'::text) AND (length(t) <= 128));

--
-- Name: is_valid_tenant(text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.is_valid_tenant(t text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (t ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'::text);

--
-- Name: FUNCTION is_valid_tenant(t text); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.is_valid_tenant(t text) IS 'A tenant id: 1 to 64 characters, lowercase letters, digits and _ . -, starting with a letter or digit.';

--
-- Name: keep_attempt_partitions(interval, interval, interval); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.keep_attempt_partitions(width interval, ahead interval, retention interval) RETURNS TABLE(created integer, retired integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'outbox'
    AS $$
DECLARE
    w     double precision := greatest(extract(epoch FROM width), 1);
    lo    timestamptz;
    hi    timestamptz;
    name  text;
    p     record;
BEGIN
    created := 0;
    retired := 0;
    -- "outboxdp" in ASCII.
    IF NOT pg_try_advisory_xact_lock(8031924123350069360) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '2s', true);
    LOOP
        SELECT max(a.upper) INTO lo FROM outbox.attempt_partitions a;
        -- Past anything the default partition holds (a new partition may
        -- not take rows already written there), and a little ahead of now:
        -- an insert routed to the default partition while a partition is
        -- attached fails if its row falls in the new range.
        lo := greatest(coalesce(lo, '-infinity'), now() + interval '5 seconds',
                       (SELECT max(t.started_at) + interval '1 microsecond'
                          FROM outbox.delivery_attempts_default t));
        EXIT WHEN lo > now() + ahead;
        hi := to_timestamp((floor(extract(epoch FROM lo) / w) + 1) * w);
        name := 'delivery_attempts_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
        EXECUTE format('CREATE TABLE outbox.%I (LIKE outbox.delivery_attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE outbox.delivery_attempts ATTACH PARTITION outbox.%I FOR VALUES FROM (%L) TO (%L)',
                       name, lo, hi);
        INSERT INTO outbox.attempt_partitions VALUES (name, lo, hi);
        created := created + 1;
    END LOOP;
    FOR p IN SELECT * FROM outbox.attempt_partitions a
              WHERE a.upper <= now() - retention ORDER BY a.upper
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE outbox.delivery_attempts DETACH PARTITION outbox.%I', p.name);
            EXECUTE format('DROP TABLE outbox.%I', p.name);
            DELETE FROM outbox.attempt_partitions a WHERE a.name = p.name;
            retired := retired + 1;
        EXCEPTION WHEN lock_not_available THEN
            EXIT;
        END;
    END LOOP;
    RETURN NEXT;
END
$$;

--
-- Name: key_bucket(bigint, text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.key_bucket(webhook_id bigint, ordering_key text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (hashtext((((webhook_id)::text || ':'::text) || ordering_key)) & 255);

--
-- Name: lock_keys(bigint[], text[]); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.lock_keys(webhook_ids bigint[], ordering_keys text[]) RETURNS void
    LANGUAGE sql
    AS $_$
    SELECT count(pg_advisory_xact_lock(28523, b.bucket))
      FROM (SELECT DISTINCT outbox.key_bucket(k.webhook_id, k.ordering_key) AS bucket
              FROM unnest($1, $2) AS k(webhook_id, ordering_key)
             WHERE k.ordering_key IS NOT NULL
             ORDER BY 1) b
$_$;

--
-- Name: FUNCTION lock_keys(webhook_ids bigint[], ordering_keys text[]); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.lock_keys(webhook_ids bigint[], ordering_keys text[]) IS 'Takes the transaction-scoped locks of these (webhook, ordering key) pairs, in order; decide what to change in a later statement.';

--
-- Name: limits; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.limits (
    singleton boolean DEFAULT true NOT NULL,
    max_payload_bytes bigint NOT NULL,
    CONSTRAINT limits_max_payload_bytes_check CHECK ((max_payload_bytes > 0)),
    CONSTRAINT limits_singleton_check CHECK (singleton)
);

--
-- Name: TABLE limits; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.limits IS 'Limits on what publishers write, changed by the schema''s owner: UPDATE outbox.limits SET max_payload_bytes = 4194304.';

--
-- Name: max_payload_bytes(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.max_payload_bytes() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT limits.max_payload_bytes FROM outbox.limits);

--
-- Name: next_events(bigint, bigint, boolean); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.next_events(max_events bigint, express_events bigint DEFAULT 0, express_keyed boolean DEFAULT true) RETURNS TABLE(id bigint, event_type text, target_webhook_id bigint, payload text, created_at timestamp with time zone, tenant text, ordering_key text)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
DECLARE
    s outbox.dispatch_state;
    seen pg_snapshot;
    n bigint := 0;
    last_xid xid8;
    last_id bigint;
    e record;
    express_ids bigint[] := '{}';
BEGIN
    -- Nothing to do, found without the lock: no pass under way, no event
    -- (test events included) of a transaction that was running at `done`
    -- and has ended, nor of a later one, is visible. Anything else,
    -- including a row from another cluster, takes the locked path below.
    SELECT * INTO STRICT s FROM outbox.dispatch_state;
    IF s.upto IS NULL THEN
        seen := pg_current_snapshot();
        IF pg_snapshot_xmax(s.done) <= pg_snapshot_xmax(seen) THEN
            PERFORM 1 FROM outbox.events v
              WHERE v.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip(s.done) AS x
                                        WHERE pg_visible_in_snapshot(x, seen)))
              LIMIT 1;
            IF NOT FOUND THEN
                -- In stream order, so that the planner walks the index
                -- from done's horizon whatever the session's settings (as
                -- an EXISTS it estimated many rows and scanned the table).
                PERFORM 1 FROM outbox.events v
                  WHERE (v.xid, v.id) > (pg_snapshot_xmax(s.done), 0)
                    AND v.xid < pg_snapshot_xmax(seen)
                    AND pg_visible_in_snapshot(v.xid, seen)
                  ORDER BY v.xid, v.id
                  LIMIT 1;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
            END IF;
        END IF;
    END IF;
    SELECT * INTO STRICT s FROM outbox.dispatch_state FOR UPDATE;
    IF max_events <= 0 AND s.upto IS NULL THEN
        -- The lane alone runs beside a pass: none is under way.
        RETURN;
    END IF;
    IF s.upto IS NULL THEN
        s.upto := pg_current_snapshot();
        IF pg_snapshot_xmax(s.done) > pg_snapshot_xmax(s.upto) THEN
            -- Snapshots only move forward on one server: this row was
            -- written by another one (the database was restored from a
            -- dump), and its transaction ids mean nothing here.
            RAISE WARNING 'outbox.dispatch_state is ahead of this server (restored from a dump?): % events not fanned out yet start the stream over',
                outbox.restart_stream();
            RETURN;
        END IF;
        -- New to this pass: transactions that were running at `done` and
        -- have ended, and those that began after it. Starting at the oldest
        -- of the first kind, not at done's xmin, keeps a long transaction
        -- elsewhere from making every pass read all events since it began.
        s.after_xid := coalesce(
            (SELECT min(x) FROM pg_snapshot_xip(s.done) AS x
              WHERE pg_visible_in_snapshot(x, s.upto)),
            pg_snapshot_xmax(s.done));
        s.after_id := 0;
        s.express_seen := NULL;
        s.express_waiting := NULL;
    END IF;
    -- The pass's position, kept as it is when this step takes none of it.
    last_xid := s.after_xid;
    last_id := s.after_id;
    FOR e IN
        SELECT v.xid, v.id, v.event_type, v.target_webhook_id, v.payload::text AS payload,
               v.created_at, v.tenant, v.ordering_key
          FROM outbox.events v
         WHERE (v.xid, v.id) > (s.after_xid, s.after_id)
           AND v.xid < pg_snapshot_xmax(s.upto)
           AND pg_visible_in_snapshot(v.xid, s.upto)
           AND NOT pg_visible_in_snapshot(v.xid, s.done)
           -- Test events were delivered when they were written, and the
           -- express lane's events fanned out already.
           AND v.dispatched_at IS NULL
         ORDER BY v.xid, v.id
         LIMIT greatest(max_events, 0)
    LOOP
        n := n + 1;
        last_xid := e.xid;
        last_id := e.id;
        id := e.id;
        event_type := e.event_type;
        target_webhook_id := e.target_webhook_id;
        payload := e.payload;
        created_at := e.created_at;
        tenant := e.tenant;
        ordering_key := e.ordering_key;
        RETURN NEXT;
    END LOOP;
    IF n < greatest(max_events, 0) THEN
        -- The pass is complete. Written even when it returned nothing: it
        -- may have read past test events, which would be read again.
        UPDATE outbox.dispatch_state
           SET done = s.upto, upto = NULL, after_xid = NULL, after_id = NULL,
               express_seen = NULL, express_waiting = NULL, updated_at = now();
        RETURN;
    END IF;
    IF express_events > 0 THEN
        -- The express lane: tenants' events of the transactions that have
        -- ended since it last looked, in the order a pass would take them.
        seen := pg_current_snapshot();
        s.express_seen := coalesce(s.express_seen, s.upto);
        s.express_waiting := coalesce(s.express_waiting, '{}');
        FOR e IN SELECT * FROM outbox.express_candidates(s.express_seen, seen)
        LOOP
            CONTINUE WHEN e.tenant = ANY (s.express_waiting);
            IF cardinality(express_ids) >= express_events
               OR (e.ordering_key IS NOT NULL AND NOT express_keyed)
               -- Something of the tenant remains in the pass.
               OR EXISTS (SELECT 1 FROM outbox.events w
                           WHERE w.tenant = e.tenant
                             AND (w.tenant, w.xid, w.id) > (e.tenant, last_xid, last_id)
                             AND w.xid < pg_snapshot_xmax(s.upto)
                             AND pg_visible_in_snapshot(w.xid, s.upto)
                             AND NOT pg_visible_in_snapshot(w.xid, s.done)
                             AND w.dispatched_at IS NULL) THEN
                -- This event waits for the next pass, and so do the
                -- tenant's later ones, so that none overtakes it.
                s.express_waiting := s.express_waiting || e.tenant;
                CONTINUE;
            END IF;
            express_ids := express_ids || e.id;
            id := e.id;
            event_type := e.event_type;
            target_webhook_id := e.target_webhook_id;
            payload := e.payload;
            created_at := e.created_at;
            tenant := e.tenant;
            ordering_key := e.ordering_key;
            RETURN NEXT;
        END LOOP;
        s.express_seen := seen;
        IF cardinality(express_ids) > 0 THEN
            UPDATE outbox.events v SET dispatched_at = now() WHERE v.id = ANY (express_ids);
        END IF;
    END IF;
    UPDATE outbox.dispatch_state
       SET upto = s.upto, after_xid = last_xid, after_id = last_id,
           express_seen = s.express_seen, express_waiting = s.express_waiting,
           updated_at = now();
END
$$;

--
-- Name: FUNCTION next_events(max_events bigint, express_events bigint, express_keyed boolean); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.next_events(max_events bigint, express_events bigint, express_keyed boolean) IS 'The next events to fan out (at most max_events of the pass, then at most express_events of tenants with nothing left in it; with max_events = 0 the lane alone, during a pass), the progress row moved past them. For outboxd; see docs/architecture.md.';

--
-- Name: next_held(bigint[], text[]); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.next_held(webhook_ids bigint[], ordering_keys text[]) RETURNS SETOF bigint
    LANGUAGE sql STABLE
    AS $_$
    SELECT n.id
      FROM (SELECT DISTINCT k.webhook_id, k.ordering_key
              FROM unnest($1, $2) AS k(webhook_id, ordering_key)
             WHERE k.ordering_key IS NOT NULL) k
      JOIN outbox.webhooks w ON w.id = k.webhook_id
     CROSS JOIN LATERAL (
           SELECT h.id, h.event_id FROM outbox.deliveries h
            WHERE h.webhook_id = k.webhook_id AND h.ordering_key = k.ordering_key
              AND h.state = 'held'
            ORDER BY h.event_id
            LIMIT 1) n
     WHERE NOT EXISTS (
           -- The conditions on state repeat the predicate of
           -- deliveries_by_key, so that the planner can prove it applies.
           SELECT 1 FROM outbox.deliveries b
            WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
              AND b.state IN ('pending', 'in_flight', 'held', 'failed')
              AND (b.state IN ('pending', 'in_flight')
                   OR (b.state = 'failed' AND w.ordered AND w.ordering_policy = 'halt'
                       AND b.released_at IS NULL AND b.event_id < n.event_id))
           OFFSET 0)
$_$;

--
-- Name: FUNCTION next_held(webhook_ids bigint[], ordering_keys text[]); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.next_held(webhook_ids bigint[], ordering_keys text[]) IS 'The next held delivery of each given (webhook, ordering key) that nothing blocks any more; take the keys'' locks (lock_keys) in an earlier statement.';

--
-- Name: notify_webhooks_changed(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.notify_webhooks_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    ids text[];
    v bigint;
BEGIN
    SELECT array_agg(id::text) INTO ids FROM (SELECT id FROM changed LIMIT 301) AS c;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE outbox.webhooks_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('outbox_webhooks',
                      CASE WHEN cardinality(ids) > 300 THEN '' ELSE array_to_string(ids, ',') END);
    PERFORM pg_notify('outbox_webhooks_version', v::text);
    RETURN NULL;
END
$$;

--
-- Name: on_event_insert(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.on_event_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: on_event_tenant_update(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.on_event_tenant_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.tenant IS NOT NULL AND NOT outbox.is_valid_tenant(NEW.tenant) THEN
        PERFORM outbox.refuse_tenant(NEW.tenant);
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: on_event_type_update(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.on_event_type_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT coalesce(outbox.is_valid_event_type(NEW.event_type), true) THEN
        PERFORM outbox.refuse_event_type(NEW.event_type);
    END IF;
    RETURN NEW;
END
$$;

--
-- Name: on_webhook_ordering_change(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.on_webhook_ordering_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.ordered AND NOT NEW.ordered THEN
        UPDATE outbox.deliveries
           SET state = 'pending', next_attempt_at = now(), updated_at = now()
         WHERE webhook_id = NEW.id AND ordering_key IS NOT NULL AND state = 'held';
    ELSIF NEW.ordered AND OLD.ordering_policy = 'halt' AND NEW.ordering_policy = 'skip' THEN
        PERFORM outbox.lock_keys(array_agg(NEW.id), array_agg(k.ordering_key))
           FROM (SELECT DISTINCT d.ordering_key FROM outbox.deliveries d
                  WHERE d.webhook_id = NEW.id AND d.ordering_key IS NOT NULL
                    AND d.state = 'held') k;
        PERFORM outbox.promote_held(array_agg(NEW.id), array_agg(k.ordering_key))
           FROM (SELECT DISTINCT d.ordering_key FROM outbox.deliveries d
                  WHERE d.webhook_id = NEW.id AND d.ordering_key IS NOT NULL
                    AND d.state = 'held') k;
    END IF;
    RETURN NULL;
END
$$;

--
-- Name: open_deliveries(bigint); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.open_deliveries(webhook bigint) RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN ((SELECT count(*) AS count FROM outbox.deliveries d WHERE ((d.webhook_id = open_deliveries.webhook) AND (d.state = ANY (ARRAY['pending'::text, 'held'::text, 'in_flight'::text])))) + (SELECT COALESCE(sum(cardinality(f.event_ids)), (0)::bigint) AS "coalesce" FROM outbox.deferred_deliveries f WHERE (f.webhook_id = open_deliveries.webhook)));

--
-- Name: payload_size(jsonb); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.payload_size(payload jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (pg_column_compression(payload) IS NULL) THEN pg_column_size(payload) ELSE octet_length((payload)::text) END;

--
-- Name: payload_within_limit(jsonb); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.payload_within_limit(payload jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
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

--
-- Name: promote_held(bigint[], text[]); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.promote_held(webhook_ids bigint[], ordering_keys text[]) RETURNS SETOF bigint
    LANGUAGE sql
    AS $_$
    UPDATE outbox.deliveries d
       SET state = 'pending', next_attempt_at = now(), updated_at = now()
     WHERE d.id = ANY (ARRAY(SELECT n FROM outbox.next_held($1, $2) AS n))
       AND d.state = 'held'
    RETURNING d.id
$_$;

--
-- Name: FUNCTION promote_held(webhook_ids bigint[], ordering_keys text[]); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.promote_held(webhook_ids bigint[], ordering_keys text[]) IS 'Makes the earliest held delivery of each given (webhook, ordering key) pending when nothing blocks it any more.';

--
-- Name: promote_stuck_keys(integer, interval); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.promote_stuck_keys(most integer, waited interval) RETURNS SETOF bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    ws bigint[];
    ks text[];
BEGIN
    SELECT array_agg(s.webhook_id), array_agg(s.ordering_key) INTO ws, ks
      FROM (SELECT DISTINCT h.webhook_id, h.ordering_key
              FROM outbox.deliveries h
              JOIN outbox.webhooks w ON w.id = h.webhook_id
             WHERE h.state = 'held' AND h.ordering_key IS NOT NULL
               AND h.updated_at < now() - waited
               AND outbox.is_next_of_key(h, w.ordered, w.ordering_policy)
               AND NOT EXISTS (SELECT 1 FROM outbox.deliveries b
                                WHERE b.webhook_id = h.webhook_id
                                  AND b.ordering_key = h.ordering_key
                                  AND b.state IN ('pending', 'in_flight', 'held', 'failed')
                                  AND b.state IN ('pending', 'in_flight'))
             LIMIT most) s;
    IF ws IS NULL THEN
        RETURN;
    END IF;
    PERFORM outbox.lock_keys(ws, ks);
    RETURN QUERY SELECT * FROM outbox.promote_held(ws, ks);
END
$$;

--
-- Name: FUNCTION promote_stuck_keys(most integer, waited interval); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.promote_stuck_keys(most integer, waited interval) IS 'Promotes the next held delivery of keys that nothing holds back any more (a safety net run by the reaper).';

--
-- Name: publish(text, jsonb, text, text, text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.publish(event_type text, payload jsonb, idempotency_key text DEFAULT NULL::text, tenant text DEFAULT NULL::text, ordering_key text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
#variable_conflict use_column
DECLARE
    new_id     bigint;
    same_event boolean;
BEGIN
    INSERT INTO outbox.events (event_type, payload, idempotency_key, tenant, ordering_key)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT ((coalesce(tenant, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
    DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT e.id, e.event_type = $1 AND e.payload = $2 INTO new_id, same_event
          FROM outbox.events e
         WHERE e.idempotency_key = $3 AND coalesce(e.tenant, '') = coalesce($4, '');
        IF NOT same_event THEN
            RAISE EXCEPTION 'idempotency key % was already used for event %, with another event type or payload', quote_literal($3), new_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_idempotency_key',
                      TABLE = 'events', SCHEMA = 'outbox',
                      HINT = 'use a key per event; a repeat with the same type and payload returns the first event''s id';
        END IF;
    END IF;
    RETURN new_id;
END
$_$;

--
-- Name: rate_buckets; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.rate_buckets (
    webhook_id bigint NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamp with time zone NOT NULL,
    slowed_rate double precision,
    slowed_at timestamp with time zone,
    slowed_until timestamp with time zone
);

--
-- Name: TABLE rate_buckets; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.rate_buckets IS 'Token buckets of rate-limited webhooks, shared by the replicas; written by outbox.take_rate_tokens and outbox.slow_rate.';

--
-- Name: rate_in_force(integer, outbox.rate_buckets, timestamp with time zone); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.rate_in_force(rate_limit integer, b outbox.rate_buckets, at timestamp with time zone) RETURNS double precision
    LANGUAGE sql STABLE
    AS $$
    SELECT CASE WHEN b.slowed_until > at THEN least(b.slowed_rate, rate_limit) ELSE rate_limit END::float8
$$;

--
-- Name: refuse_event_type(text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.refuse_event_type(t text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'new row for relation "events" violates check constraint "event_type_format"'
        USING ERRCODE = 'check_violation',
              CONSTRAINT = 'event_type_format',
              DETAIL = format('event_type %L: lowercase letters, digits and _ . : - only, 1 to 128 characters',
                              left(t, 140));
END
$$;

--
-- Name: refuse_tenant(text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.refuse_tenant(t text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'new row for relation "events" violates check constraint "tenant_format"'
        USING ERRCODE = 'check_violation',
              CONSTRAINT = 'tenant_format',
              DETAIL = format('tenant %L: 1 to 64 characters, lowercase letters, digits and _ . - only, starting with a letter or digit',
                              left(t, 80));
END
$$;

--
-- Name: replay(bigint); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.replay(delivery_id bigint) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
DECLARE
    n integer;
    d outbox.deliveries;
    policy text;
    keyed boolean;
BEGIN
    SELECT * INTO d FROM outbox.deliveries x WHERE x.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    SELECT w.ordering_policy INTO policy FROM outbox.webhooks w
     WHERE w.id = d.webhook_id AND w.ordered;
    keyed := d.ordering_key IS NOT NULL AND policy IS NOT NULL;
    IF keyed THEN
        PERFORM outbox.lock_keys(ARRAY[d.webhook_id], ARRAY[d.ordering_key]);
    END IF;
    UPDATE outbox.deliveries x
       SET state = CASE WHEN keyed AND (
                            EXISTS (SELECT 1 FROM outbox.deliveries h
                                     WHERE h.webhook_id = x.webhook_id AND h.ordering_key = x.ordering_key
                                       AND h.state IN ('pending', 'in_flight'))
                            OR NOT outbox.is_next_of_key(x, true, policy))
                        THEN 'held' ELSE 'pending' END,
           earlier_attempts = x.earlier_attempts + x.attempts, attempts = 0,
           replays = x.replays + 1, next_attempt_at = now(), locked_until = NULL,
           released_at = NULL, updated_at = now()
     WHERE x.id = $1 AND x.state IN ('delivered', 'failed', 'cancelled');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$_$;

--
-- Name: replay_failed(bigint, timestamp with time zone); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.replay_failed(webhook_id bigint, since timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
DECLARE
    n integer;
    w outbox.webhooks;
BEGIN
    SELECT * INTO w FROM outbox.webhooks x WHERE x.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    IF w.ordered THEN
        PERFORM outbox.lock_keys(array_agg($1), array_agg(k.ordering_key))
           FROM (SELECT DISTINCT f.ordering_key FROM outbox.deliveries f
                  WHERE f.webhook_id = $1 AND f.state = 'failed'
                    AND f.created_at >= $2 AND f.ordering_key IS NOT NULL) k;
    END IF;
    UPDATE outbox.deliveries d
       SET state = CASE WHEN r.held THEN 'held' ELSE 'pending' END,
           earlier_attempts = d.earlier_attempts + d.attempts, attempts = 0,
           replays = d.replays + 1, next_attempt_at = now(), locked_until = NULL,
           released_at = NULL, updated_at = now()
      FROM (SELECT f.id,
                   w.ordered AND f.ordering_key IS NOT NULL AND (
                       row_number() OVER (PARTITION BY f.ordering_key ORDER BY f.event_id) > 1
                    OR EXISTS (SELECT 1 FROM outbox.deliveries h
                                WHERE h.webhook_id = f.webhook_id AND h.ordering_key = f.ordering_key
                                  AND h.state IN ('pending', 'in_flight'))
                    OR EXISTS (SELECT 1 FROM outbox.deliveries e
                                WHERE e.webhook_id = f.webhook_id AND e.ordering_key = f.ordering_key
                                  AND e.event_id < f.event_id AND e.state = 'failed'
                                  AND w.ordering_policy = 'halt' AND e.released_at IS NULL
                                  AND e.created_at < $2)) AS held
              FROM outbox.deliveries f
             WHERE f.webhook_id = $1 AND f.state = 'failed' AND f.created_at >= $2) r
     WHERE d.id = r.id AND d.state = 'failed';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$_$;

--
-- Name: restart_stream(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.restart_stream() RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    now_seen pg_snapshot;
    m xid8;
    ours_below xid8;
    n bigint;
BEGIN
    LOCK TABLE outbox.events IN SHARE ROW EXCLUSIVE MODE;
    -- Taken once no insert is under way.
    now_seen := pg_current_snapshot();
    m := pg_snapshot_xmin(now_seen);
    ours_below := CASE
        WHEN (SELECT pg_snapshot_xmax(done) FROM outbox.dispatch_state) > pg_snapshot_xmax(now_seen)
        THEN pg_snapshot_xmax(now_seen)
        ELSE '0'::xid8 END;
    -- Both judged by the old progress row, which changes last.
    UPDATE outbox.events e SET dispatched_at = now()
     WHERE e.dispatched_at IS NULL AND e.xid >= m AND e.xid >= ours_below
       AND coalesce(outbox.is_dispatched(e), false);
    UPDATE outbox.events e SET xid = pg_current_xact_id()
     WHERE e.dispatched_at IS NULL
       AND (e.xid < ours_below OR NOT coalesce(outbox.is_dispatched(e), false));
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO outbox.dispatch_state (done) VALUES (format('%s:%s:', m, m)::pg_snapshot)
    ON CONFLICT (singleton) DO UPDATE
       SET done = EXCLUDED.done, upto = NULL, after_xid = NULL, after_id = NULL,
           express_seen = NULL, express_waiting = NULL, updated_at = now();
    RETURN n;
END
$$;

--
-- Name: FUNCTION restart_stream(); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.restart_stream() IS 'Starts the event stream over, keeping every event not fanned out yet; returns how many. outboxd calls it when the progress row comes from another cluster.';

--
-- Name: rotate_secret(bigint, interval); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.rotate_secret(webhook_id bigint, overlap interval DEFAULT '24:00:00'::interval) RETURNS text
    LANGUAGE plpgsql
    AS $$
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

--
-- Name: send_test_event(bigint, text); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.send_test_event(webhook_id bigint, event_type text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE plpgsql
    AS $_$
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
    INSERT INTO outbox.events (event_type, payload, target_webhook_id, is_test)
    VALUES (etype, coalesce(example, '{"test": true}'::jsonb), hook.id, true)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$_$;

--
-- Name: skip_halted(bigint); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.skip_halted(delivery_id bigint) RETURNS integer
    LANGUAGE plpgsql
    AS $_$
DECLARE
    d outbox.deliveries;
    n integer;
BEGIN
    SELECT x.* INTO d FROM outbox.deliveries x WHERE x.id = $1;
    IF FOUND AND d.ordering_key IS NOT NULL THEN
        PERFORM outbox.lock_keys(ARRAY[d.webhook_id], ARRAY[d.ordering_key]);
    END IF;
    SELECT x.* INTO d FROM outbox.deliveries x JOIN outbox.webhooks w ON w.id = x.webhook_id
     WHERE x.id = $1 AND x.state = 'failed' AND x.released_at IS NULL
       AND x.ordering_key IS NOT NULL AND w.ordered AND w.ordering_policy = 'halt'
       FOR UPDATE OF x;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % is not halting a key (it must be a failed, unreleased delivery of an ordered webhook whose ordering_policy is halt; see outbox.halted_keys)', $1
            USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE outbox.deliveries x SET released_at = now(), updated_at = now() WHERE x.id = $1;
    SELECT count(*) INTO n FROM outbox.promote_held(ARRAY[d.webhook_id], ARRAY[d.ordering_key]);
    RETURN n;
END
$_$;

--
-- Name: FUNCTION skip_halted(delivery_id bigint); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.skip_halted(delivery_id bigint) IS 'Releases a halted key: its failed delivery stays failed, the next one goes. Returns how many were promoted (0 or 1).';

--
-- Name: slow_rate(bigint, interval); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.slow_rate(webhook_id bigint, for_how_long interval) RETURNS double precision
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
DECLARE
    lim  integer;
    b    outbox.rate_buckets%ROWTYPE;
    at   timestamptz := clock_timestamp();
    rate float8;
BEGIN
    SELECT w.rate_limit INTO lim FROM outbox.webhooks w WHERE w.id = $1;
    IF lim IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox.rate_buckets (webhook_id, tokens, refilled_at)
    VALUES ($1, 0, at)
    ON CONFLICT DO NOTHING;
    SELECT * INTO b FROM outbox.rate_buckets r WHERE r.webhook_id = $1 FOR UPDATE;
    IF b.slowed_until > at THEN
        rate := CASE WHEN b.slowed_at > at - interval '1 second' THEN b.slowed_rate
                     ELSE greatest(b.slowed_rate / 2, least(0.1, lim)) END;
    ELSE
        rate := greatest(lim / 2.0, least(0.1, lim));
    END IF;
    UPDATE outbox.rate_buckets r
       SET slowed_rate = rate,
           slowed_at = CASE WHEN rate IS DISTINCT FROM b.slowed_rate OR b.slowed_until <= at
                            THEN at ELSE r.slowed_at END,
           slowed_until = greatest(r.slowed_until, at + least(for_how_long, interval '1 hour')),
           tokens = least(r.tokens, greatest(rate * 0.1, greatest(ceil(rate * 0.04), 1)))
     WHERE r.webhook_id = $1;
    RETURN rate;
END
$_$;

--
-- Name: FUNCTION slow_rate(webhook_id bigint, for_how_long interval); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.slow_rate(webhook_id bigint, for_how_long interval) IS 'After a 429 with Retry-After: halves a rate-limited webhook''s rate for that long (at most an hour); returns the rate in force.';

--
-- Name: take_rate_tokens(bigint, integer); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.take_rate_tokens(webhook_id bigint, wanted integer, OUT granted integer, OUT wait_ms double precision) RETURNS record
    LANGUAGE plpgsql
    AS $_$
#variable_conflict use_column
DECLARE
    lim     integer;
    b       outbox.rate_buckets%ROWTYPE;
    at      timestamptz;
    rate    float8;
    grant_n integer;
    burst   float8;
    least_n integer;
    avail   float8;
BEGIN
    SELECT w.rate_limit INTO lim FROM outbox.webhooks w WHERE w.id = $1;
    IF lim IS NULL OR wanted <= 0 THEN
        granted := greatest(wanted, 0);
        wait_ms := 0;
        RETURN;
    END IF;
    SELECT * INTO b FROM outbox.rate_buckets r WHERE r.webhook_id = $1 FOR UPDATE;
    at := clock_timestamp();
    IF NOT FOUND THEN
        -- First use: a full bucket (a concurrent first use inserts it too).
        rate := lim;
        INSERT INTO outbox.rate_buckets (webhook_id, tokens, refilled_at)
        VALUES ($1, greatest(rate * 0.1, greatest(ceil(rate * 0.04), 1)), at)
        ON CONFLICT DO NOTHING;
        SELECT * INTO b FROM outbox.rate_buckets r WHERE r.webhook_id = $1 FOR UPDATE;
        at := greatest(clock_timestamp(), b.refilled_at);
    END IF;
    rate := outbox.rate_in_force(lim, b, at);
    grant_n := greatest(ceil(rate * 0.04), 1);
    burst := greatest(rate * 0.1, grant_n);
    avail := least(burst, b.tokens + rate * greatest(extract(epoch FROM at - b.refilled_at), 0));
    least_n := least(wanted, grant_n);
    IF avail + 1e-9 >= least_n THEN
        granted := least(floor(avail + 1e-9), wanted);
        wait_ms := 0;
    ELSE
        granted := 0;
        wait_ms := greatest((least_n - avail) / rate * 1000, 0.001);
    END IF;
    UPDATE outbox.rate_buckets r
       SET tokens = greatest(avail - granted, 0),
           refilled_at = greatest(r.refilled_at, at)
     WHERE r.webhook_id = $1;
END
$_$;

--
-- Name: FUNCTION take_rate_tokens(webhook_id bigint, wanted integer, OUT granted integer, OUT wait_ms double precision); Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON FUNCTION outbox.take_rate_tokens(webhook_id bigint, wanted integer, OUT granted integer, OUT wait_ms double precision) IS 'Takes up to wanted tokens of a rate-limited webhook''s shared bucket: (granted, 0), or (0, milliseconds until a grant is there).';

--
-- Name: touch_updated_at(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

--
-- Name: touch_webhook_of_secret(); Type: FUNCTION; Schema: outbox; Owner: -
--

CREATE FUNCTION outbox.touch_webhook_of_secret() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE outbox.webhooks SET updated_at = now() WHERE id = NEW.webhook_id;
    RETURN NULL;
END
$$;

--
-- Name: attempt_partitions; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.attempt_partitions (
    name text NOT NULL,
    lower timestamp with time zone NOT NULL,
    upper timestamp with time zone NOT NULL
);

--
-- Name: TABLE attempt_partitions; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.attempt_partitions IS 'The range partitions of outbox.delivery_attempts: started_at from lower (inclusive) to upper.';

--
-- Name: console_sessions; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.console_sessions (
    token_sha256 bytea NOT NULL,
    tenant text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    CONSTRAINT console_sessions_tenant_check CHECK (((tenant IS NULL) OR outbox.is_valid_tenant(tenant)))
);

--
-- Name: TABLE console_sessions; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.console_sessions IS 'Signed-in console and portal browsers; a row deleted is a session ended on every replica.';

--
-- Name: deliveries_id_seq; Type: SEQUENCE; Schema: outbox; Owner: -
--

ALTER TABLE outbox.deliveries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME outbox.deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: delivery_attempts; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.delivery_attempts (
    id bigint NOT NULL,
    delivery_id bigint NOT NULL,
    event_id bigint NOT NULL,
    webhook_id bigint NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms double precision NOT NULL,
    status_code integer,
    error text,
    response_body text,
    outcome text NOT NULL,
    url text,
    CONSTRAINT outcome_known CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retry'::text, 'failed'::text])))
)
PARTITION BY RANGE (started_at);

--
-- Name: TABLE delivery_attempts; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.delivery_attempts IS 'The delivery log: one row per HTTP attempt, partitioned by started_at. Read it through outbox.delivery_log.';

--
-- Name: COLUMN delivery_attempts.url; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.delivery_attempts.url IS 'the URL the request was sent to (NULL for attempts logged before schema version 11)';

--
-- Name: delivery_attempts_before_v14; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.delivery_attempts_before_v14 (
    id bigint DEFAULT NULL NOT NULL,
    delivery_id bigint NOT NULL,
    event_id bigint NOT NULL,
    webhook_id bigint NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms double precision NOT NULL,
    status_code integer,
    error text,
    response_body text,
    outcome text NOT NULL,
    url text,
    CONSTRAINT delivery_attempts_before_v14_bound CHECK ((started_at < '<cut-over>'::timestamp with time zone)),
    CONSTRAINT outcome_known CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retry'::text, 'failed'::text])))
);

--
-- Name: TABLE delivery_attempts_before_v14; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.delivery_attempts_before_v14 IS 'The delivery log: one row per HTTP attempt. Read it through outbox.delivery_log.';

--
-- Name: COLUMN delivery_attempts_before_v14.url; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.delivery_attempts_before_v14.url IS 'the URL the request was sent to (NULL for attempts logged before schema version 11)';

--
-- Name: delivery_attempts_id; Type: SEQUENCE; Schema: outbox; Owner: -
--

CREATE SEQUENCE outbox.delivery_attempts_id
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

--
-- Name: delivery_attempts_id; Type: SEQUENCE OWNED BY; Schema: outbox; Owner: -
--

ALTER SEQUENCE outbox.delivery_attempts_id OWNED BY outbox.delivery_attempts.id;

--
-- Name: delivery_attempts_default; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.delivery_attempts_default (
    id bigint DEFAULT nextval('outbox.delivery_attempts_id'::regclass) NOT NULL,
    delivery_id bigint NOT NULL,
    event_id bigint NOT NULL,
    webhook_id bigint NOT NULL,
    attempt integer NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration_ms double precision NOT NULL,
    status_code integer,
    error text,
    response_body text,
    outcome text NOT NULL,
    url text,
    CONSTRAINT outcome_known CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retry'::text, 'failed'::text])))
);

--
-- Name: webhooks; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.webhooks (
    id bigint NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    event_types text[] DEFAULT '{*}'::text[] NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    headers jsonb DEFAULT '{}'::jsonb NOT NULL,
    disabled_reason text,
    disabled_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    tenant text,
    rate_limit integer,
    ordered boolean DEFAULT false NOT NULL,
    ordering_policy text DEFAULT 'skip'::text NOT NULL,
    CONSTRAINT event_types_syntax CHECK (outbox.are_valid_patterns(event_types)),
    CONSTRAINT headers_object CHECK ((jsonb_typeof(headers) = 'object'::text)),
    CONSTRAINT name_not_blank CHECK ((btrim(name) <> ''::text)),
    CONSTRAINT tenant_format CHECK (((tenant IS NULL) OR outbox.is_valid_tenant(tenant))),
    CONSTRAINT url_scheme CHECK ((url ~* '^https?://[^/?#[:space:]@]+([/?#][^[:space:]]*)?$'::text))
);

--
-- Name: TABLE webhooks; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.webhooks IS 'Subscribed endpoints. event_types holds patterns: an exact type, a prefix such as payment.*, or * for all.';

--
-- Name: COLUMN webhooks.headers; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.webhooks.headers IS 'extra request headers, e.g. {"authorization": "Bearer ..."}: string values, no control characters; outboxd''s own and hop-by-hop headers are refused';

--
-- Name: COLUMN webhooks.tenant; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.webhooks.tenant IS 'the customer whose endpoint this is (it gets that tenant''s events only); null: a platform webhook, for every event';

--
-- Name: COLUMN webhooks.rate_limit; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.webhooks.rate_limit IS 'Requests per second to this webhook, all replicas together; null: no limit.';

--
-- Name: COLUMN webhooks.ordered; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.webhooks.ordered IS 'Deliver the events of one ordering key one at a time, in order.';

--
-- Name: COLUMN webhooks.ordering_policy; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON COLUMN outbox.webhooks.ordering_policy IS 'When a delivery of a key finally fails: skip (the next goes) or halt (the key waits for an admin).';

--
-- Name: delivery_log; Type: VIEW; Schema: outbox; Owner: -
--

CREATE VIEW outbox.delivery_log AS
 SELECT a.id AS attempt_id,
    a.started_at,
    a.webhook_id,
    w.name AS webhook_name,
    COALESCE(a.url, w.url) AS webhook_url,
    a.event_id,
    e.event_type,
    a.delivery_id,
    a.attempt,
    a.outcome,
    a.status_code,
    a.error,
    a.duration_ms,
    a.response_body,
    d.state AS delivery_state,
    COALESCE(e.is_test, false) AS is_test
   FROM (((outbox.delivery_attempts a
     LEFT JOIN outbox.webhooks w ON ((w.id = a.webhook_id)))
     LEFT JOIN outbox.events e ON ((e.id = a.event_id)))
     LEFT JOIN outbox.deliveries d ON ((d.id = a.delivery_id)))
  ORDER BY a.id DESC;

--
-- Name: event_types; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.event_types (
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    example_payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT event_type_format CHECK (outbox.is_valid_event_type(name))
);

--
-- Name: TABLE event_types; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.event_types IS 'The event catalog: documentation for admins and the payload of test events. It documents; it does not gate.';

--
-- Name: events_id_seq; Type: SEQUENCE; Schema: outbox; Owner: -
--

ALTER TABLE outbox.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME outbox.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: halted_keys; Type: VIEW; Schema: outbox; Owner: -
--

CREATE VIEW outbox.halted_keys AS
 SELECT w.id AS webhook_id,
    w.name AS webhook_name,
    w.tenant,
    d.ordering_key,
    d.id AS delivery_id,
    d.event_id,
    e.event_type,
    d.updated_at AS failed_at,
    d.last_status,
    d.last_error,
    ( SELECT count(*) AS count
           FROM outbox.deliveries h
          WHERE ((h.webhook_id = d.webhook_id) AND (h.ordering_key = d.ordering_key) AND (h.state = 'held'::text))) AS waiting
   FROM ((outbox.deliveries d
     JOIN outbox.webhooks w ON ((w.id = d.webhook_id)))
     LEFT JOIN outbox.events e ON ((e.id = d.event_id)))
  WHERE (w.ordered AND (w.ordering_policy = 'halt'::text) AND (d.ordering_key IS NOT NULL) AND (d.state = 'failed'::text) AND (d.released_at IS NULL) AND (NOT (EXISTS ( SELECT 1
           FROM outbox.deliveries b
          WHERE ((b.webhook_id = d.webhook_id) AND (b.ordering_key = d.ordering_key) AND (b.state = 'failed'::text) AND (b.released_at IS NULL) AND (b.event_id < d.event_id))))));

--
-- Name: VIEW halted_keys; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON VIEW outbox.halted_keys IS 'Ordering keys of halt webhooks waiting for an admin: replay or skip (outbox.skip_halted) the failed delivery.';

--
-- Name: portal_links_used; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.portal_links_used (
    nonce text NOT NULL,
    tenant text NOT NULL,
    used_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

--
-- Name: TABLE portal_links_used; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.portal_links_used IS 'Portal links that signed a browser in: each works once, until it expires.';

--
-- Name: undispatched_events; Type: VIEW; Schema: outbox; Owner: -
--

CREATE VIEW outbox.undispatched_events AS
 SELECT e.id,
    e.event_type,
    e.payload,
    e.created_at,
    e.idempotency_key,
    e.target_webhook_id,
    e.dispatched_at,
    e.is_test,
    e.xid,
    e.tenant
   FROM outbox.events e
  WHERE ((ROW(e.xid, e.id) > ROW(COALESCE(( SELECT dispatch_state.after_xid
           FROM outbox.dispatch_state), pg_snapshot_xmax(( SELECT dispatch_state.done
           FROM outbox.dispatch_state))), COALESCE(( SELECT dispatch_state.after_id
           FROM outbox.dispatch_state), (0)::bigint))) AND (e.dispatched_at IS NULL) AND (NOT pg_visible_in_snapshot(e.xid, ( SELECT dispatch_state.done
           FROM outbox.dispatch_state))))
UNION ALL
 SELECT e.id,
    e.event_type,
    e.payload,
    e.created_at,
    e.idempotency_key,
    e.target_webhook_id,
    e.dispatched_at,
    e.is_test,
    e.xid,
    e.tenant
   FROM outbox.events e
  WHERE ((e.xid = ANY (ARRAY( SELECT pg_snapshot_xip(COALESCE(dispatch_state.upto, dispatch_state.done)) AS pg_snapshot_xip
           FROM outbox.dispatch_state))) AND (ROW(e.xid, e.id) <= ROW(COALESCE(( SELECT dispatch_state.after_xid
           FROM outbox.dispatch_state), pg_snapshot_xmax(( SELECT dispatch_state.done
           FROM outbox.dispatch_state))), COALESCE(( SELECT dispatch_state.after_id
           FROM outbox.dispatch_state), (0)::bigint))) AND (e.dispatched_at IS NULL) AND (NOT pg_visible_in_snapshot(e.xid, ( SELECT dispatch_state.done
           FROM outbox.dispatch_state))));

--
-- Name: VIEW undispatched_events; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON VIEW outbox.undispatched_events IS 'Committed events outboxd has not fanned out to webhooks yet (the backlog).';

--
-- Name: wakeup; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.wakeup (
    singleton boolean DEFAULT true NOT NULL,
    requested boolean DEFAULT true NOT NULL,
    CONSTRAINT wakeup_singleton_check CHECK (singleton)
);

--
-- Name: webhook_health; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.webhook_health (
    webhook_id bigint NOT NULL,
    failing_since timestamp with time zone,
    paused_until timestamp with time zone,
    last_error text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

--
-- Name: TABLE webhook_health; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.webhook_health IS 'Written by outboxd: when a webhook started failing and until when its deliveries are paused. No row, or nulls, means healthy.';

--
-- Name: webhook_secrets; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.webhook_secrets (
    webhook_id bigint NOT NULL,
    secret text DEFAULT outbox.generate_secret() NOT NULL,
    previous_secret text,
    previous_secret_expires_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT previous_secret_format CHECK (((previous_secret IS NULL) OR (previous_secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'::text))),
    CONSTRAINT previous_secret_has_expiry CHECK (((previous_secret IS NULL) OR (previous_secret_expires_at IS NOT NULL))),
    CONSTRAINT secret_format CHECK ((secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'::text))
);

--
-- Name: TABLE webhook_secrets; Type: COMMENT; Schema: outbox; Owner: -
--

COMMENT ON TABLE outbox.webhook_secrets IS 'The signing secret of each webhook (made when the webhook is added), and during a rotation the previous one, which also signs until previous_secret_expires_at.';

--
-- Name: webhooks_id_seq; Type: SEQUENCE; Schema: outbox; Owner: -
--

ALTER TABLE outbox.webhooks ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME outbox.webhooks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: webhooks_version; Type: TABLE; Schema: outbox; Owner: -
--

CREATE TABLE outbox.webhooks_version (
    one boolean DEFAULT true NOT NULL,
    version bigint NOT NULL,
    CONSTRAINT webhooks_version_one_check CHECK (one)
);

--
-- Name: delivery_attempts_before_v14; Type: TABLE ATTACH; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts ATTACH PARTITION outbox.delivery_attempts_before_v14 FOR VALUES FROM (MINVALUE) TO ('<cut-over>');

--
-- Name: delivery_attempts_default; Type: TABLE ATTACH; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts ATTACH PARTITION outbox.delivery_attempts_default DEFAULT;

--
-- Name: delivery_attempts id; Type: DEFAULT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts ALTER COLUMN id SET DEFAULT nextval('outbox.delivery_attempts_id'::regclass);

--
-- Name: attempt_partitions attempt_partitions_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.attempt_partitions
    ADD CONSTRAINT attempt_partitions_pkey PRIMARY KEY (name);

--
-- Name: console_sessions console_sessions_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.console_sessions
    ADD CONSTRAINT console_sessions_pkey PRIMARY KEY (token_sha256);

--
-- Name: deferred_deliveries deferred_deliveries_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.deferred_deliveries
    ADD CONSTRAINT deferred_deliveries_pkey PRIMARY KEY (webhook_id, first_event_id);

--
-- Name: deliveries deliveries_event_webhook; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.deliveries
    ADD CONSTRAINT deliveries_event_webhook UNIQUE (event_id, webhook_id);

--
-- Name: deliveries deliveries_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);

--
-- Name: delivery_attempts delivery_attempts_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts
    ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id, started_at);

--
-- Name: delivery_attempts_before_v14 delivery_attempts_before_v14_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts_before_v14
    ADD CONSTRAINT delivery_attempts_before_v14_pkey PRIMARY KEY (id, started_at);

--
-- Name: delivery_attempts_default delivery_attempts_default_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.delivery_attempts_default
    ADD CONSTRAINT delivery_attempts_default_pkey PRIMARY KEY (id, started_at);

--
-- Name: dispatch_state dispatch_state_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.dispatch_state
    ADD CONSTRAINT dispatch_state_pkey PRIMARY KEY (singleton);

--
-- Name: event_types event_types_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.event_types
    ADD CONSTRAINT event_types_pkey PRIMARY KEY (name);

--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);

--
-- Name: limits limits_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.limits
    ADD CONSTRAINT limits_pkey PRIMARY KEY (singleton);

--
-- Name: portal_links_used portal_links_used_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.portal_links_used
    ADD CONSTRAINT portal_links_used_pkey PRIMARY KEY (nonce);

--
-- Name: rate_buckets rate_buckets_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.rate_buckets
    ADD CONSTRAINT rate_buckets_pkey PRIMARY KEY (webhook_id);

--
-- Name: wakeup wakeup_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.wakeup
    ADD CONSTRAINT wakeup_pkey PRIMARY KEY (singleton);

--
-- Name: webhook_health webhook_health_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhook_health
    ADD CONSTRAINT webhook_health_pkey PRIMARY KEY (webhook_id);

--
-- Name: webhook_secrets webhook_secrets_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhook_secrets
    ADD CONSTRAINT webhook_secrets_pkey PRIMARY KEY (webhook_id);

--
-- Name: webhooks webhooks_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhooks
    ADD CONSTRAINT webhooks_pkey PRIMARY KEY (id);

--
-- Name: webhooks_version webhooks_version_pkey; Type: CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhooks_version
    ADD CONSTRAINT webhooks_version_pkey PRIMARY KEY (one);

--
-- Name: console_sessions_expiry; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX console_sessions_expiry ON outbox.console_sessions USING btree (expires_at);

--
-- Name: deferred_deliveries_first_event; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX deferred_deliveries_first_event ON outbox.deferred_deliveries USING btree (first_event_id);

--
-- Name: deliveries_by_key; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX deliveries_by_key ON outbox.deliveries USING btree (webhook_id, ordering_key, event_id) WHERE ((ordering_key IS NOT NULL) AND (state = ANY (ARRAY['pending'::text, 'in_flight'::text, 'held'::text, 'failed'::text])));

--
-- Name: deliveries_due; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX deliveries_due ON outbox.deliveries USING btree (webhook_id, LEAST(attempts, 1), next_attempt_at) WHERE (state = 'pending'::text);

--
-- Name: deliveries_failed; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX deliveries_failed ON outbox.deliveries USING btree (webhook_id) WHERE (state = 'failed'::text);

--
-- Name: deliveries_leased; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX deliveries_leased ON outbox.deliveries USING btree (locked_until) WHERE (locked_until IS NOT NULL);

--
-- Name: delivery_attempts_by_delivery; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_by_delivery ON ONLY outbox.delivery_attempts USING btree (delivery_id);

--
-- Name: delivery_attempts_by_webhook_time; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_by_webhook_time ON ONLY outbox.delivery_attempts USING btree (webhook_id, started_at);

--
-- Name: delivery_attempts_default_delivery_id_idx; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_default_delivery_id_idx ON outbox.delivery_attempts_default USING btree (delivery_id);

--
-- Name: delivery_attempts_default_webhook_id_started_at_idx; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_default_webhook_id_started_at_idx ON outbox.delivery_attempts_default USING btree (webhook_id, started_at);

--
-- Name: delivery_attempts_delivery; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_delivery ON outbox.delivery_attempts_before_v14 USING btree (delivery_id);

--
-- Name: delivery_attempts_webhook_time; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX delivery_attempts_webhook_time ON outbox.delivery_attempts_before_v14 USING btree (webhook_id, started_at);

--
-- Name: events_by_tenant; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX events_by_tenant ON outbox.events USING btree (tenant, xid, id) WHERE (tenant IS NOT NULL);

--
-- Name: events_idempotency_key; Type: INDEX; Schema: outbox; Owner: -
--

CREATE UNIQUE INDEX events_idempotency_key ON outbox.events USING btree (COALESCE(tenant, ''::text), idempotency_key) WHERE (idempotency_key IS NOT NULL);

--
-- Name: events_stream; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX events_stream ON outbox.events USING btree (xid, id) WHERE (xid IS NOT NULL);

--
-- Name: webhooks_tenant; Type: INDEX; Schema: outbox; Owner: -
--

CREATE INDEX webhooks_tenant ON outbox.webhooks USING btree (tenant) WHERE (tenant IS NOT NULL);

--
-- Name: delivery_attempts_before_v14_pkey; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_pkey ATTACH PARTITION outbox.delivery_attempts_before_v14_pkey;

--
-- Name: delivery_attempts_default_delivery_id_idx; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_by_delivery ATTACH PARTITION outbox.delivery_attempts_default_delivery_id_idx;

--
-- Name: delivery_attempts_default_pkey; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_pkey ATTACH PARTITION outbox.delivery_attempts_default_pkey;

--
-- Name: delivery_attempts_default_webhook_id_started_at_idx; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_by_webhook_time ATTACH PARTITION outbox.delivery_attempts_default_webhook_id_started_at_idx;

--
-- Name: delivery_attempts_delivery; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_by_delivery ATTACH PARTITION outbox.delivery_attempts_delivery;

--
-- Name: delivery_attempts_webhook_time; Type: INDEX ATTACH; Schema: outbox; Owner: -
--

ALTER INDEX outbox.delivery_attempts_by_webhook_time ATTACH PARTITION outbox.delivery_attempts_webhook_time;

--
-- Name: event_types event_types_touch; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER event_types_touch BEFORE UPDATE ON outbox.event_types FOR EACH ROW EXECUTE FUNCTION outbox.touch_updated_at();

--
-- Name: events events_event_type_update; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER events_event_type_update BEFORE UPDATE OF event_type ON outbox.events FOR EACH ROW EXECUTE FUNCTION outbox.on_event_type_update();

--
-- Name: events events_insert; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER events_insert BEFORE INSERT ON outbox.events FOR EACH ROW EXECUTE FUNCTION outbox.on_event_insert();

--
-- Name: events events_tenant_update; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER events_tenant_update BEFORE UPDATE OF tenant ON outbox.events FOR EACH ROW EXECUTE FUNCTION outbox.on_event_tenant_update();

--
-- Name: webhook_secrets webhook_secrets_check; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhook_secrets_check BEFORE INSERT OR UPDATE ON outbox.webhook_secrets FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_secret();

--
-- Name: webhook_secrets webhook_secrets_touch; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhook_secrets_touch AFTER UPDATE ON outbox.webhook_secrets FOR EACH ROW EXECUTE FUNCTION outbox.touch_webhook_of_secret();

--
-- Name: webhooks webhooks_add_secret; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_add_secret AFTER INSERT ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.add_webhook_secret();

--
-- Name: webhooks webhooks_cancel_on_delete; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_cancel_on_delete AFTER DELETE ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.cancel_deliveries_of_gone_webhook();

--
-- Name: webhooks webhooks_cancel_on_disable; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_cancel_on_disable AFTER UPDATE OF enabled ON outbox.webhooks FOR EACH ROW WHEN ((old.enabled AND (NOT new.enabled))) EXECUTE FUNCTION outbox.cancel_deliveries_of_gone_webhook();

--
-- Name: webhooks webhooks_check; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_check BEFORE INSERT OR UPDATE ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook();

--
-- Name: webhooks webhooks_check_ordering; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_check_ordering BEFORE INSERT OR UPDATE OF ordered, ordering_policy ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_ordering();

--
-- Name: webhooks webhooks_check_rate_limit; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_check_rate_limit BEFORE INSERT OR UPDATE OF rate_limit ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_rate_limit();

--
-- Name: webhooks webhooks_check_tenant; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_check_tenant BEFORE INSERT OR UPDATE OF headers, tenant ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_tenant();

--
-- Name: webhooks webhooks_notify_delete; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_notify_delete AFTER DELETE ON outbox.webhooks REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();

--
-- Name: webhooks webhooks_notify_insert; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_notify_insert AFTER INSERT ON outbox.webhooks REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();

--
-- Name: webhooks webhooks_notify_update; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_notify_update AFTER UPDATE ON outbox.webhooks REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();

--
-- Name: webhooks webhooks_ordering_change; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_ordering_change AFTER UPDATE OF ordered, ordering_policy ON outbox.webhooks FOR EACH ROW WHEN (((old.ordered IS DISTINCT FROM new.ordered) OR (old.ordering_policy IS DISTINCT FROM new.ordering_policy))) EXECUTE FUNCTION outbox.on_webhook_ordering_change();

--
-- Name: webhooks webhooks_touch; Type: TRIGGER; Schema: outbox; Owner: -
--

CREATE TRIGGER webhooks_touch BEFORE UPDATE ON outbox.webhooks FOR EACH ROW EXECUTE FUNCTION outbox.touch_updated_at();

--
-- Name: rate_buckets rate_buckets_webhook_id_fkey; Type: FK CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.rate_buckets
    ADD CONSTRAINT rate_buckets_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES outbox.webhooks(id) ON DELETE CASCADE;

--
-- Name: webhook_health webhook_health_webhook_id_fkey; Type: FK CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhook_health
    ADD CONSTRAINT webhook_health_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES outbox.webhooks(id) ON DELETE CASCADE;

--
-- Name: webhook_secrets webhook_secrets_webhook_id_fkey; Type: FK CONSTRAINT; Schema: outbox; Owner: -
--

ALTER TABLE ONLY outbox.webhook_secrets
    ADD CONSTRAINT webhook_secrets_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES outbox.webhooks(id) ON DELETE CASCADE;

--
-- PostgreSQL database dump complete
--
