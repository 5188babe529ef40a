-- Rate limits per webhook, shared by every replica (docs/architecture.md,
-- "Rate limits"): outbox.webhooks.rate_limit in requests a second, one token
-- bucket per limited webhook in outbox.rate_buckets, and
-- outbox.take_rate_tokens, which every replica calls before it sends. The
-- arithmetic is crates/core/src/rate.rs; its constants are repeated here.

ALTER TABLE outbox.webhooks ADD COLUMN rate_limit integer;
COMMENT ON COLUMN outbox.webhooks.rate_limit IS
  'Requests per second to this webhook, all replicas together; null: no limit.';

-- A trigger of its own rather than a CHECK constraint: a failed CHECK prints
-- the row, secret included. Named to sort before webhooks_touch.
CREATE FUNCTION outbox.check_webhook_rate_limit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rate_limit IS NOT NULL AND NEW.rate_limit <= 0 THEN
        RAISE EXCEPTION 'webhook violates rate_limit_positive: rate_limit is requests per second and must be at least 1, or null for no limit (got %)',
                NEW.rate_limit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'rate_limit_positive', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER webhooks_check_rate_limit BEFORE INSERT OR UPDATE OF rate_limit ON outbox.webhooks
    FOR EACH ROW EXECUTE FUNCTION outbox.check_webhook_rate_limit();

-- One row per rate-limited webhook that has sent: the tokens left at
-- refilled_at, and a slowdown after a 429 with Retry-After (the rate in force
-- until slowed_until, begun at slowed_at).
CREATE TABLE outbox.rate_buckets (
    webhook_id   bigint PRIMARY KEY REFERENCES outbox.webhooks (id) ON DELETE CASCADE,
    tokens       float8 NOT NULL,
    refilled_at  timestamptz NOT NULL,
    slowed_rate  float8,
    slowed_at    timestamptz,
    slowed_until timestamptz
);
COMMENT ON TABLE outbox.rate_buckets IS
  'Token buckets of rate-limited webhooks, shared by the replicas; written by outbox.take_rate_tokens and outbox.slow_rate.';

-- The rate in force for a webhook: its limit, or the slowdown while it lasts.
CREATE FUNCTION outbox.rate_in_force(rate_limit integer, b outbox.rate_buckets, at timestamptz)
RETURNS float8
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN b.slowed_until > at THEN least(b.slowed_rate, rate_limit) ELSE rate_limit END::float8
$$;

-- take_rate_tokens: up to `wanted` tokens of the webhook's bucket, as
-- Bucket::take in crates/core/src/rate.rs: every whole token there (at most
-- wanted) once at least a grant's worth is, else none and the milliseconds
-- until a grant's worth is there. A webhook without a limit gets all it
-- wants. The row is locked for this one statement's work only.
CREATE FUNCTION outbox.take_rate_tokens(webhook_id bigint, wanted integer,
                                        OUT granted integer, OUT wait_ms float8)
LANGUAGE plpgsql AS $$
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
$$;
COMMENT ON FUNCTION outbox.take_rate_tokens(bigint, integer) IS
  'Takes up to wanted tokens of a rate-limited webhook''s shared bucket: (granted, 0), or (0, milliseconds until a grant is there).';

-- slow_rate: a 429 with Retry-After slows the whole webhook down for that
-- long, as slowed_rate in crates/core/src/rate.rs: half the rate in force
-- (at least 0.1 a second), halved again only by a 429 at least a second
-- after the slowdown began. The bucket is cut to the new burst. Returns the
-- rate in force; null for a webhook without a limit.
CREATE FUNCTION outbox.slow_rate(webhook_id bigint, for_how_long interval)
RETURNS float8
LANGUAGE plpgsql AS $$
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
$$;
COMMENT ON FUNCTION outbox.slow_rate(bigint, interval) IS
  'After a 429 with Retry-After: halves a rate-limited webhook''s rate for that long (at most an hour); returns the rate in force.';
