-- Ordered delivery per key (docs/architecture.md, "Ordered delivery").
--
-- A delivery of an ordered webhook whose ordering key still has an earlier
-- delivery in the way waits in the new state `held`: per (webhook, key) at
-- most one *head* (pending or in flight), the others held. Claims only
-- ever see pending rows, so they are unchanged and cost what they cost for
-- unordered webhooks. The fan-out decides held or not at insert; whoever
-- finishes a head (the result writer, an admin's skip, a policy change)
-- promotes the key's earliest held delivery to pending through
-- outbox.promote_held. Every transaction that changes what a key's head
-- is first takes the key's advisory lock (outbox.lock_keys), then decides
-- in a new statement, so neither can miss the other (see the document).
--
-- The refusal of V20 (ordered_available) goes: ordered webhooks work.

-- The new state. NOT VALID then VALIDATE: the check of existing rows
-- needs no stronger lock than the ALTER itself.
ALTER TABLE outbox.deliveries DROP CONSTRAINT state_known;
ALTER TABLE outbox.deliveries ADD CONSTRAINT state_known
    CHECK (state IN ('pending', 'in_flight', 'held', 'delivered', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE outbox.deliveries VALIDATE CONSTRAINT state_known;
COMMENT ON TABLE outbox.deliveries IS
  'One row per (event, webhook): pending -> in_flight -> delivered | pending (retry) | failed; held while an earlier delivery of its ordering key is in the way (ordered webhooks); cancelled when the webhook is disabled or deleted first.';
COMMENT ON COLUMN outbox.deliveries.ordering_key IS
  'The event''s ordering key, copied when the webhook was ordered at fan-out; null: delivered without order.';
COMMENT ON COLUMN outbox.deliveries.released_at IS
  'When an admin skipped this failed delivery (outbox.skip_halted): it no longer halts its key.';

-- Each key's deliveries that the rule reads: heads, held ones, and failed
-- ones (which halt their key under the halt policy until released). The
-- V20 index did not cover held rows; no delivery carried a key before
-- this version, so the new one is built from an empty set.
DROP INDEX outbox.deliveries_open_by_key;
CREATE INDEX deliveries_by_key ON outbox.deliveries (webhook_id, ordering_key, event_id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'in_flight', 'held', 'failed');

-- The rule, with held deliveries: a delivery of an ordered webhook is the
-- next of its key when no earlier delivery of its (webhook, key) is
-- pending, in flight, held or (under halt) failed and not released.
CREATE OR REPLACE FUNCTION outbox.is_next_of_key(d outbox.deliveries, ordered boolean, policy text)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT d.ordering_key IS NULL OR NOT ordered OR NOT EXISTS (
        SELECT 1 FROM outbox.deliveries e
         WHERE e.webhook_id = d.webhook_id
           AND e.ordering_key = d.ordering_key
           AND e.event_id < d.event_id
           AND e.state IN ('pending', 'in_flight', 'held', 'failed')
           AND (e.state <> 'failed' OR (policy = 'halt' AND e.released_at IS NULL)))
$$;

-- The lock of an ordering key. Whoever changes what a key's head is (the
-- fan-out inserting behind it, the result writer finishing it and
-- promoting the next, replay, skip, the rescuer) takes it first, in a
-- statement of its own, and decides in the next: READ COMMITTED gives that
-- statement a fresh snapshot, so whichever of two transactions commits
-- first, the other sees what it did. Row locks on the heads are not
-- enough: a head promoted after the fan-out locked the old one could be
-- claimed, sent and finished before the fan-out commits, and neither would
-- see the other's work. Keys share 256 transaction-scoped advisory locks
-- (two-int form, class 'ok' = 28523, apart from the janitor's one-bigint
-- lock), taken in bucket order so that two transactions never deadlock;
-- a transaction holds at most 256 however many keys its batch has.
CREATE FUNCTION outbox.key_bucket(webhook_id bigint, ordering_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtext(webhook_id::text || ':' || ordering_key) & 255;

CREATE FUNCTION outbox.lock_keys(webhook_ids bigint[], ordering_keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    b integer;
BEGIN
    FOR b IN SELECT DISTINCT outbox.key_bucket(k.webhook_id, k.ordering_key)
               FROM unnest($1, $2) AS k(webhook_id, ordering_key)
              WHERE k.ordering_key IS NOT NULL
              ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(28523, b);
    END LOOP;
END
$$;
COMMENT ON FUNCTION outbox.lock_keys(bigint[], text[]) IS
  'Takes the transaction-scoped locks of these (webhook, ordering key) pairs, in order; decide what to change in a later statement.';

-- promote_held: for each (webhook, key) given, the earliest held delivery
-- becomes pending, due now, when the key has no head and nothing earlier
-- blocks it (is_next_of_key). Returns the ids promoted. The caller has
-- taken the keys' locks (lock_keys) in an earlier statement of its
-- transaction: this statement's fresh snapshot sees every held row a
-- fan-out committed meanwhile.
CREATE FUNCTION outbox.promote_held(webhook_ids bigint[], ordering_keys text[])
RETURNS SETOF bigint
LANGUAGE sql VOLATILE AS $$
    UPDATE outbox.deliveries d
       SET state = 'pending', next_attempt_at = now(), updated_at = now()
     WHERE d.id = ANY (ARRAY(
               SELECT n.id
                 FROM (SELECT DISTINCT k.webhook_id, k.ordering_key
                         FROM unnest($1, $2) AS k(webhook_id, ordering_key)
                        WHERE k.ordering_key IS NOT NULL) k
                 JOIN outbox.webhooks w ON w.id = k.webhook_id
                CROSS JOIN LATERAL (
                      SELECT h.* FROM outbox.deliveries h
                       WHERE h.webhook_id = k.webhook_id AND h.ordering_key = k.ordering_key
                         AND h.state = 'held'
                       ORDER BY h.event_id
                       LIMIT 1) n
                WHERE NOT EXISTS (SELECT 1 FROM outbox.deliveries b
                                   WHERE b.webhook_id = k.webhook_id
                                     AND b.ordering_key = k.ordering_key
                                     AND b.state IN ('pending', 'in_flight'))
                  AND outbox.is_next_of_key(n::outbox.deliveries, w.ordered, w.ordering_policy)))
       AND d.state = 'held'
    RETURNING d.id
$$;
COMMENT ON FUNCTION outbox.promote_held(bigint[], text[]) IS
  'Makes the earliest held delivery of each given (webhook, ordering key) pending when nothing blocks it any more.';

-- The policy check stays; ordered webhooks are no longer refused.
CREATE OR REPLACE FUNCTION outbox.check_webhook_ordering() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ordering_policy IS NULL OR NEW.ordering_policy NOT IN ('skip', 'halt') THEN
        RAISE EXCEPTION 'webhook violates ordering_policy_known: ordering_policy must be skip (a failed event stays failed and the next one goes) or halt (the key waits for an admin) (got %)',
                coalesce(quote_literal(NEW.ordering_policy), 'null')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ordering_policy_known', TABLE = 'webhooks', SCHEMA = 'outbox';
    END IF;
    RETURN NEW;
END
$$;

-- Turning ordered off releases every held delivery (pending, due now: the
-- webhook no longer keeps an order). Turning it on applies to deliveries
-- fanned out from then on. Going from halt to skip lets every halted key
-- go on (its failed delivery no longer blocks). The keys are locked
-- first, as the writer locks them, so a head finishing at the same moment
-- cannot miss the change.
CREATE FUNCTION outbox.on_webhook_ordering_change() RETURNS trigger
LANGUAGE plpgsql AS $$
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
CREATE TRIGGER webhooks_ordering_change AFTER UPDATE OF ordered, ordering_policy ON outbox.webhooks
    FOR EACH ROW WHEN (OLD.ordered IS DISTINCT FROM NEW.ordered
                       OR OLD.ordering_policy IS DISTINCT FROM NEW.ordering_policy)
    EXECUTE FUNCTION outbox.on_webhook_ordering_change();

-- A disabled or deleted webhook gets nothing more: its waiting deliveries,
-- held ones included, are cancelled (in-flight ones finish and record
-- their result). As in V1, with held.
CREATE OR REPLACE FUNCTION outbox.cancel_deliveries_of_gone_webhook() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox.deliveries
       SET state = 'cancelled', locked_until = NULL, updated_at = now(),
           last_error = coalesce(last_error, CASE WHEN TG_OP = 'DELETE' THEN 'webhook deleted' ELSE 'webhook disabled' END)
     WHERE webhook_id = OLD.id AND state = 'pending';
    UPDATE outbox.deliveries
       SET state = 'cancelled', updated_at = now(),
           last_error = coalesce(last_error, CASE WHEN TG_OP = 'DELETE' THEN 'webhook deleted' ELSE 'webhook disabled' END)
     WHERE webhook_id = OLD.id AND ordering_key IS NOT NULL AND state = 'held';
    RETURN NULL;
END
$$;

-- replay: back to pending with a fresh attempt budget, as in V11. A
-- delivery of an ordered webhook keeps its key's order: when the key has a
-- head, or (under halt) an earlier failure not released, the replayed
-- delivery waits held; its event is older than the key's other held ones,
-- so it is the next sent. The key is locked in one statement and the
-- decision is made in the next (a fresh snapshot), as the fan-out does, so
-- a head finishing meanwhile either sees the held row or is seen finished.
-- released_at is cleared: a replayed delivery that fails again halts again.
CREATE OR REPLACE FUNCTION outbox.replay(delivery_id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
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
$$;

-- replay_failed: every failed delivery of the webhook since then, as in
-- V11. Of an ordered webhook's keys, only the earliest replayed delivery
-- of a key with nothing in the way becomes its head; the rest wait held.
CREATE OR REPLACE FUNCTION outbox.replay_failed(webhook_id bigint, since timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
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
$$;

-- skip_halted: an admin lets a halted key go on without its failed
-- delivery, which stays failed with released_at set; the key's next held
-- delivery becomes pending. Refuses (P0002) a delivery that is not
-- halting a key. The key is locked first (a replayed delivery may be in
-- flight), so its writer, finishing meanwhile, sees the release.
CREATE FUNCTION outbox.skip_halted(delivery_id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
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
$$;
COMMENT ON FUNCTION outbox.skip_halted(bigint) IS
  'Releases a halted key: its failed delivery stays failed, the next one goes. Returns how many were promoted (0 or 1).';

-- The rescuer, run by every replica's reaper: a held delivery whose key
-- has no head and nothing that blocks it any more, and that has waited a
-- while, is promoted. Nothing in the pipeline leaves such a key, but an
-- admin can (deleting a halted failure by hand, the janitor retiring one),
-- and so can a replica whose cache still had a webhook ordered after it
-- was turned off. At most `most` keys per call; returns the ids promoted.
CREATE FUNCTION outbox.promote_stuck_keys(most integer, waited interval)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
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
COMMENT ON FUNCTION outbox.promote_stuck_keys(integer, interval) IS
  'Promotes the next held delivery of keys that nothing holds back any more (a safety net run by the reaper).';

-- The keys of halt webhooks that wait for an admin: per (webhook, key) the
-- earliest failed delivery not released, and how many wait behind it.
CREATE VIEW outbox.halted_keys AS
SELECT w.id          AS webhook_id,
       w.name        AS webhook_name,
       w.tenant,
       d.ordering_key,
       d.id          AS delivery_id,
       d.event_id,
       e.event_type,
       d.updated_at  AS failed_at,
       d.last_status,
       d.last_error,
       (SELECT count(*) FROM outbox.deliveries h
         WHERE h.webhook_id = d.webhook_id AND h.ordering_key = d.ordering_key
           AND h.state = 'held') AS waiting
  FROM outbox.deliveries d
  JOIN outbox.webhooks w ON w.id = d.webhook_id
  LEFT JOIN outbox.events e ON e.id = d.event_id
 WHERE w.ordered AND w.ordering_policy = 'halt'
   AND d.ordering_key IS NOT NULL AND d.state = 'failed' AND d.released_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM outbox.deliveries b
                    WHERE b.webhook_id = d.webhook_id AND b.ordering_key = d.ordering_key
                      AND b.state = 'failed' AND b.released_at IS NULL
                      AND b.event_id < d.event_id);
COMMENT ON VIEW outbox.halted_keys IS
  'Ordering keys of halt webhooks waiting for an admin: replay or skip (outbox.skip_halted) the failed delivery.';
